"""Stage 2 RL: PPO on verifiable medical problems with a medical-verifier reward.

    accelerate launch --config_file ./configs/deepspeed_zero3.yaml RL_stage2.py \
        --model_name_or_path FreedomIntelligence/HuatuoGPT-o1-8B \
        --reward_model_path FreedomIntelligence/medical_o1_verifier_3B \
        --value_model_path meta-llama/Llama-3.2-3B-Instruct \
        --dataset_name FreedomIntelligence/medical-o1-verifiable-problem ...

All trl `PPOConfig` / `TrainingArguments` flags work (see --help). A rerun of the same command
resumes from the newest complete `<output_dir>/checkpoint-N` (policy, value model, optimizer,
scheduler, RNG, data position) when it was trained from the same model, data and result-changing
flags (huatuo_o1.train.checkpoints); `--resume False` starts over. The logic lives in huatuo_o1/rl/ppo.py (trainer wiring,
reward hook, resume), huatuo_o1/rl/rewards.py and huatuo_o1/rl/data.py.
"""

from huatuo_o1.cli import run_main
from huatuo_o1.rl.ppo import main

if __name__ == "__main__":
    run_main(main)
