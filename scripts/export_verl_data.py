"""Write verl's RL parquet files (train.parquet, val.parquet) from our verifiable problems.

    python scripts/export_verl_data.py --data_path FreedomIntelligence/medical-o1-verifiable-problem \
        --tokenizer FreedomIntelligence/HuatuoGPT-o1-8B --output_dir data/verl

Flags, method and outputs: `--help`, and huatuo_o1/rl/verl_data.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.verl_data import main

if __name__ == "__main__":
    run_main(main)
