#!/usr/bin/env bash
# Table 2 accuracy and Table 3 length of one ablation model: NAME=sft_mcq (sft_response, sft_simple_cot, ppo_response,
# ppo_simple_cot, dpo_medical_o1_8B, rloo_medical_o1_8B ...) under ./ckpts; the summary holds the mean generated
# tokens per source and overall (SGLang in its own environment: export HUATUO_SGLANG_PYTHON; BACKEND=hf generates
# in-process with transformers instead). CKPTS: the folder holding the run folders; RESULTS_DIR: where results go.
set -euo pipefail
cd "$(dirname "$0")/../../.."
backend=(--launch_server)
if [[ "${BACKEND:-server}" == hf ]]; then backend=(--backend hf); fi
python evaluation/eval.py --model_name "${CKPTS:-./ckpts}/${NAME:?set NAME, e.g. NAME=sft_mcq}" --eval_file "${EVAL_FILE:-evaluation/data/eval_data.json}" \
  "${backend[@]}" --output_dir "${RESULTS_DIR:-evaluation/results}/${NAME}" "$@"
