"""Evaluate a model on multiple-choice medical benchmarks, as HuatuoGPT-o1's evaluation/eval.py.

    python evaluation/get_eval_data.py   # the paper's evaluation/data/eval_data.json, checked by git blob id
    python -m sglang.launch_server --model-path $model_name --port $port --mem-fraction-static 0.8 --dp 1 --tp 1 > sglang0.log 2>&1 &
    python evaluation/eval.py --model_name $model_name --eval_file evaluation/data/eval_data.json --port $port
    bash evaluation/kill_sglang_server.sh

    python evaluation/eval.py --model_name $model_name --eval_file ... --launch_server   # starts and stops SGLang
    python evaluation/eval.py --model_name models/SmolLM2-135M-Instruct --eval_file evaluation/data/eval_sample.json --backend hf

All logic lives in huatuo_o1/eval/: run.py (flags and flow; answers from huatuo_o1/generation.py), original.py
(the original's numbers), scoring.py (our reading and the summaries), data.py (the paper's file),
chart.py (the chart) and serving.py (the SGLang process).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.eval.run import main

if __name__ == "__main__":
    run_main(main)
