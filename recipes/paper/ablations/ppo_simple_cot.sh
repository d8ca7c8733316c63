#!/usr/bin/env bash
# Table 2, PPO on top of recipes/paper/ablations/sft_simple_cot.sh: the paper's PPO recipe of recipes/paper/ppo_8gpu.sh
# (lr 5e-7, batch 128, KL 0.03, 3 PPO epochs, gamma 1.0, value coefficient 1.0, clip 0.2) with the reward's
# format rule of that SFT target (--sft_target simple_cot). Policy: ${OUTPUT_DIR}/ppo_simple_cot.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" \
  --deepspeed_multinode_launcher standard RL_stage2.py --sft_target simple_cot --model_name_or_path "${SFT_MODEL:-./ckpts/sft_simple_cot}" \
  --reward_model_path "${VERIFIER:-FreedomIntelligence/medical_o1_verifier_3B}" --value_model_path "${VALUE_MODEL:-meta-llama/Llama-3.2-3B-Instruct}" \
  --dataset_name "${DATA:-FreedomIntelligence/medical-o1-verifiable-problem}" --response_length 1300 --temperature 0.5 \
  --local_rollout_forward_batch_size 8 --num_ppo_epochs 3 --num_mini_batches 1 --total_episodes 20000 \
  --per_device_train_batch_size 1 --gradient_accumulation_steps 16 --global_batch_size 128 --bf16 True --output_dir "${OUTPUT_DIR:-./ckpts}" \
  --save_strategy steps --save_steps 20 --save_total_limit 1 --kl_coef 0.03 --vf_coef 1.0 --learning_rate 5e-7 \
  --warmup_ratio 0.05 --gradient_checkpointing True --run_name ppo_simple_cot --report_to wandb "$@"
