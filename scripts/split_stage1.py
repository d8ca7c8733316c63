"""Split stage-1 output into the SFT-search set and the RL set (the paper: 20K / 20K), deterministically.

    python scripts/split_stage1.py --data_path output_data/mcq_verifiable_final_40000.json \
        --sft_size 20000 --rl_size 20000 [--closed_set output_data/mcq_verifiable_final_40000.json \
        --closed_size 4000] [--seed 42]

Flags, method and outputs: `--help`, and huatuo_o1/datagen/stage1_split.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.datagen.stage1_split import main

if __name__ == "__main__":
    run_main(main)
