#!/usr/bin/env bash
# Table 2, SFT + RLOO: PPO's reward, data and settings (lr 5e-7, batch 128, KL 0.03, clip 0.2) with k = 2 samples
# per prompt and no value model; --num_iterations 3 reuses each batch 3 times as PPO's 3 epochs.
# Policy: ${OUTPUT_DIR}/rloo_medical_o1_8B.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" \
  --deepspeed_multinode_launcher standard RL_stage2_rloo.py --model_name_or_path "${SFT_MODEL:-./ckpts/sft_stage1}" \
  --reward_model_path "${VERIFIER:-FreedomIntelligence/medical_o1_verifier_3B}" \
  --dataset_name "${DATA:-FreedomIntelligence/medical-o1-verifiable-problem}" --num_generations 2 --max_completion_length 1300 \
  --temperature 0.5 --learning_rate 5e-7 --beta 0.03 --epsilon 0.2 --num_iterations 3 --global_batch_size 128 \
  --per_device_train_batch_size 8 --num_train_epochs 1 --bf16 True --gradient_checkpointing True --warmup_ratio 0.05 \
  --output_dir "${OUTPUT_DIR:-./ckpts}" --run_name rloo_medical_o1_8B --report_to wandb "$@"
