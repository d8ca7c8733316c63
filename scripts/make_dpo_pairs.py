"""DPO pairs: sample n responses per verifiable problem from the SFT model, verify, pair right with wrong.

    python scripts/make_dpo_pairs.py --model_path ckpts/sft_stage1 --data_path <problems.json> \
        --output data/dpo_pairs.jsonl --reward_model_path FreedomIntelligence/medical_o1_verifier_3B

Flags, method and outputs: `--help`, and huatuo_o1/rl/dpo_pairs.py (make_parser, main).
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.dpo_pairs import main

if __name__ == "__main__":
    run_main(main)
