#!/usr/bin/env bash
# HuatuoGPT-o1-7B (Qwen2.5 backbone; released, not in Table 1). One GPU per replica
# (SGLang in its own environment: export HUATUO_SGLANG_PYTHON; --dp defaults to the visible GPUs / --tp).
set -euo pipefail
cd "$(dirname "$0")/../.."
python evaluation/eval.py --model_name "${MODEL:-FreedomIntelligence/HuatuoGPT-o1-7B}" --eval_file "${EVAL_FILE:-evaluation/data/eval_data.json}" \
  --launch_server --output_dir "${OUTPUT_DIR:-evaluation/results/HuatuoGPT-o1-7B}" "$@"
