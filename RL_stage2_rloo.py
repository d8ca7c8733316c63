"""Stage 2 RL with RLOO (k = 2, no value model): the PPO script's reward and data, trl's RLOOTrainer.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_rloo.py \
        --model_name_or_path <SFT model> \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem --max_completion_length 1300 ...

The GRPO script's flags, plus every trl `RLOOConfig` flag (see --help); logic in huatuo_o1/rl/rloo.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.rloo import main

if __name__ == "__main__":
    run_main(main)
