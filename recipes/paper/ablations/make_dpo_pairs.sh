#!/usr/bin/env bash
# Table 2, DPO data: 5 responses per verifiable problem sampled from the SFT model (recipes/paper/sft_8gpu.sh),
# judged by the published verifier; one correct with one incorrect response per question, questions without
# such a pair dropped. Samples from a server of the SFT model (start SGLang on it first, as for evaluation;
# BACKEND=hf samples in-process instead); a rerun never samples a finished question again.
set -euo pipefail
cd "$(dirname "$0")/../../.."
backend=(--backend server --api_url "${API_URL:-http://127.0.0.1:30000/v1}")
if [[ "${BACKEND:-server}" == hf ]]; then backend=(--backend hf); fi
python scripts/make_dpo_pairs.py --model_path "${SFT_MODEL:-./ckpts/sft_stage1}" "${backend[@]}" \
  --data_path "${DATA:-FreedomIntelligence/medical-o1-verifiable-problem}" --n_samples 5 --max_new_tokens 1300 \
  --reward_model_path "${VERIFIER:-FreedomIntelligence/medical_o1_verifier_3B}" --output "${PAIRS:-./data/dpo_pairs.jsonl}" "$@"
