#!/usr/bin/env bash
# Table 2, SFT on the original multiple-choice questions (question + options -> the correct option) (--sft_target mcq), otherwise the paper's SFT recipe of recipes/paper/sft_8gpu.sh
# (3 epochs, lr 5e-6, batch 128). DATA: a file with question, options, answer_idx (the search output keeps them). Model: ${OUTPUT_DIR}/sft_mcq.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 \
  --deepspeed_multinode_launcher standard SFT_stage1.py --sft_target mcq \
  --model_path "${MODEL:-meta-llama/Llama-3.1-8B-Instruct}" --data_path "${DATA:?set DATA to the search output, output_data/<stem>_CoT_search_final_<N>.json}" \
  --experiment_name sft_mcq --output_dir "${OUTPUT_DIR:-./ckpts}" --global_batch_size 128 "$@"
