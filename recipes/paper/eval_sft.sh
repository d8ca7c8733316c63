#!/usr/bin/env bash
# Table 1's "w/o RL" row: the model of recipes/paper/sft_8gpu.sh
# (SGLang in its own environment: export HUATUO_SGLANG_PYTHON; --dp defaults to the visible GPUs / --tp).
set -euo pipefail
cd "$(dirname "$0")/../.."
python evaluation/eval.py --model_name "${MODEL:-./ckpts/sft_stage1}" --eval_file "${EVAL_FILE:-evaluation/data/eval_data.json}" \
  --launch_server --output_dir "${OUTPUT_DIR:-evaluation/results/sft_stage1}" "$@"
