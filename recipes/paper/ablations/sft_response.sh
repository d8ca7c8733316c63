#!/usr/bin/env bash
# Table 2, SFT on the final response alone (no reasoning) (--sft_target response), otherwise the paper's SFT recipe of recipes/paper/sft_8gpu.sh
# (3 epochs, lr 5e-6, batch 128). DATA: any SFT file with Question and Response. Model: ${OUTPUT_DIR}/sft_response.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 \
  --deepspeed_multinode_launcher standard SFT_stage1.py --sft_target response \
  --model_path "${MODEL:-meta-llama/Llama-3.1-8B-Instruct}" --data_path "${DATA:-FreedomIntelligence/medical-o1-reasoning-SFT}" \
  --experiment_name sft_response --output_dir "${OUTPUT_DIR:-./ckpts}" --global_batch_size 128 "$@"
