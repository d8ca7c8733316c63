"""Stage 2 RL: PPO on verifiable medical problems with a medical-verifier reward.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2.py \
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --value_model_path meta-llama/Llama-3.2-3B-Instruct \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem ...

Every flag of trl 1.12's `PPOConfig` and transformers' `TrainingArguments` works (see --help_all),
with its meaning and default; the PPO itself is ours (trl 1.13+ ship none). A rerun of the same command
resumes from the newest complete `<output_dir>/checkpoint-N` (policy, value model, optimizer,
scheduler, RNG, data position) when it was trained from the same model, data and result-changing
flags (huatuo_o1.train.checkpoints); `--resume False` starts over. The logic lives in
huatuo_o1/rl/: ppo.py (flags, main), ppo_config.py (PPO settings), ppo_core.py (the maths),
ppo_trainer.py (rollouts, updates, checkpoints, resume), ppo_reward.py, rewards.py and data.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.ppo import main

if __name__ == "__main__":
    run_main(main)
