#!/usr/bin/env bash
# Table 2, SFT + DPO: DPO from the SFT model on the pairs of recipes/paper/ablations/make_dpo_pairs.sh
# (the paper: lr 1e-6, batch 128, beta 1). Policy: ${OUTPUT_DIR}/dpo_medical_o1_8B.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" \
  --deepspeed_multinode_launcher standard RL_stage2_dpo.py --model_name_or_path "${SFT_MODEL:-./ckpts/sft_stage1}" \
  --dataset_name "${PAIRS:-./data/dpo_pairs.jsonl}" --learning_rate 1e-6 --beta 1.0 --global_batch_size 128 \
  --per_device_train_batch_size 1 --max_length 4096 --bf16 True --gradient_checkpointing True --warmup_ratio 0.05 \
  --output_dir "${OUTPUT_DIR:-./ckpts}" --run_name dpo_medical_o1_8B --report_to wandb "$@"
