#!/usr/bin/env bash
# Paper stage 1, SFT (§4.1: 3 epochs, lr 5e-6, batch 128): Llama-3.1-8B-Instruct on the published SFT
# data (its en config). The original command; --global_batch_size 128 added so that another NUM_GPUS keeps
# the paper batch (on 8 GPUs: 2 per GPU x 8 accumulation x 8). Model: ${OUTPUT_DIR}/sft_stage1.
# Extra flags are appended: bash recipes/paper/sft_8gpu.sh --report_to none
set -euo pipefail
cd "$(dirname "$0")/../.."
accelerate launch --config_file ./configs/deepspeed_zero3.yaml --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 \
  --deepspeed_multinode_launcher standard SFT_stage1.py \
  --model_path "${MODEL:-meta-llama/Llama-3.1-8B-Instruct}" --data_path "${DATA:-FreedomIntelligence/medical-o1-reasoning-SFT}" \
  --experiment_name sft_stage1 --output_dir "${OUTPUT_DIR:-./ckpts}" --global_batch_size 128 "$@"
