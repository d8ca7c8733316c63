"""Stage 2 RL with GRPO (no value model): the PPO script's reward and data, trl's GRPOTrainer.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2_grpo.py \
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem \
        --num_generations 8 --max_completion_length 1300 --beta 0.03 --use_vllm True ...

All trl `GRPOConfig` flags work (see --help); logic in huatuo_o1/rl/grpo.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.grpo import main

if __name__ == "__main__":
    run_main(main)
