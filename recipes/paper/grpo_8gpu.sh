#!/usr/bin/env bash
# GRPO with the PPO reward and data (not in the paper, which used PPO only): no value model.
# vLLM generation: append --use_vllm True (pip install -r requirements-vllm.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
accelerate launch --num_processes "${NUM_GPUS:-8}" --config_file ./configs/deepspeed_zero3.yaml RL_stage2_grpo.py \
  --model_name_or_path "${POLICY:-FreedomIntelligence/HuatuoGPT-o1-8B}" --reward_model_path "${VERIFIER:-FreedomIntelligence/medical_o1_verifier_3B}" \
  --dataset_name "${DATA:-FreedomIntelligence/medical-o1-verifiable-problem}" --num_generations 8 --max_completion_length 1300 \
  --temperature 0.5 --beta 0.03 --learning_rate 5e-7 --warmup_ratio 0.05 --bf16 True --output_dir "${OUTPUT_DIR:-./ckpts}" \
  --run_name grpo_medical_o1_8B "$@"
