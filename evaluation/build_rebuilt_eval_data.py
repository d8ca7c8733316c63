"""Rebuild an evaluation file from the public benchmark datasets: NOT the paper's file.

    python evaluation/build_rebuilt_eval_data.py --output evaluation/data/eval_rebuilt_not_paper.json

Its item set differs from the paper's evaluation/data/eval_data.json (other PubMedQA ids, other
MMLU-Pro categories, GPQA options in another order): its numbers are not comparable with the
paper's Table 1, and eval.py says so when it scores it. For the paper's file run
`python evaluation/get_eval_data.py`. Needs the Hugging Face hub (GPQA is gated).
All logic lives in huatuo_o1/eval/rebuild.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.eval.rebuild import main

if __name__ == "__main__":
    run_main(main)
