"""Throughput and MFU of a finished SFT run, from its own logs (used by scripts/gpu_check.sh).

    python scripts/gpu_mfu.py <SFT run folder> [--peak_tflops 989]

Flags, method and outputs: `--help`, and huatuo_o1/train/mfu.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.train.mfu import main

if __name__ == "__main__":
    run_main(main)
