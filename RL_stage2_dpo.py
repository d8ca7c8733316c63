"""Stage 2 with DPO (the paper's ablation): preference pairs of the SFT model's own right and wrong answers.

    python scripts/make_dpo_pairs.py --model_path <SFT model> --data_path <problems> --output data/dpo_pairs.jsonl ...
    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_dpo.py \
        --model_name_or_path <SFT model> --dataset_name data/dpo_pairs.jsonl ...

All trl `DPOConfig` flags work (see --help); logic in huatuo_o1/rl/dpo.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.dpo import main

if __name__ == "__main__":
    run_main(main)
