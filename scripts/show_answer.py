"""Greedily answer one question with a model folder's chat template and print the answer.

    python scripts/show_answer.py --model_path ckpts/sft_stage1 --question "..."

Flags, method and outputs: `--help`, and huatuo_o1/train/show_answer.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.train.show_answer import main

if __name__ == "__main__":
    run_main(main)
