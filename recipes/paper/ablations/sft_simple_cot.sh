#!/usr/bin/env bash
# Table 2, SFT on the search's first reasoning and conclusion (Simple CoT) (--sft_target simple_cot), otherwise the paper's SFT recipe of recipes/paper/sft_8gpu.sh
# (3 epochs, lr 5e-6, batch 128). DATA: the search output (its response_struct and verify fields). Model: ${OUTPUT_DIR}/sft_simple_cot.
set -euo pipefail
cd "$(dirname "$0")/../../.."
accelerate launch --config_file "${ACCELERATE_CONFIG:-./configs/deepspeed_zero3.yaml}" --num_processes "${NUM_GPUS:-8}" --num_machines 1 --machine_rank 0 \
  --deepspeed_multinode_launcher standard SFT_stage1.py --sft_target simple_cot \
  --model_path "${MODEL:-meta-llama/Llama-3.1-8B-Instruct}" --data_path "${DATA:?set DATA to the search output, output_data/<stem>_CoT_search_final_<N>.json}" \
  --experiment_name sft_simple_cot --output_dir "${OUTPUT_DIR:-./ckpts}" --global_batch_size 128 "$@"
