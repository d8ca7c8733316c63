"""Fetch the paper's evaluation file and accept it only if it is byte for byte the published one.

    python evaluation/get_eval_data.py                      # download from GitHub (raw, main branch)
    python evaluation/get_eval_data.py --from_file PATH     # check and install a copy downloaded by hand

Writes evaluation/data/eval_data.json only when its git blob id is
f437175670f14110c3328ab6d87a031b0ec9646c; otherwise one line and exit code 2, nothing written.
All logic lives in huatuo_o1/eval/data.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.eval.data import main

if __name__ == "__main__":
    run_main(main)
