#!/usr/bin/env bash
# Table 1's HuatuoGPT-o1-8B row, reproduced: the policy of recipes/paper/ppo_8gpu.sh
# (SGLang in its own environment: export HUATUO_SGLANG_PYTHON; --dp defaults to the visible GPUs / --tp).
set -euo pipefail
cd "$(dirname "$0")/../.."
python evaluation/eval.py --model_name "${MODEL:-./ckpts/ppo_medical_o1_8B}" --eval_file "${EVAL_FILE:-evaluation/data/eval_data.json}" \
  --launch_server --output_dir "${OUTPUT_DIR:-evaluation/results/ppo_medical_o1_8B}" "$@"
