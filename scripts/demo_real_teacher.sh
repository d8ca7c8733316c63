#!/usr/bin/env bash
# The real-teacher demo: stages 1 and 2 for real against a local vLLM server (vLLM's CPU build in
# .venv-vllm) serving the embedded default model as the teacher, with structured outputs, then SFT
# of the same model on what they produced. A 135M teacher's quality; every stage really runs.
# Outputs go to demo_out/real_teacher/ (git-ignored). On 2 cores, once the environments exist: about
# 1 minute for the three stages plus the server's start (half a minute to a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_vllm_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 DS_ACCELERATOR=cpu PYTHONWARNINGS="ignore::FutureWarning,ignore::DeprecationWarning"
PY=.venv/bin/python
MODEL=models/SmolLM2-135M-Instruct
OUT=demo_out/real_teacher
mkdir -p "$OUT"
$PY -m huatuo_o1.models "$MODEL" >/dev/null
if [ -z "${HUATUO_VLLM_URL:-}" ]; then
  # no server given: run this same script again inside one (started now, stopped at its end)
  exec $PY -m huatuo_o1.testing.vllm_server --log "$OUT/vllm_server.log" -- bash "$0" "$@"
fi

step() { printf '\n==== %s ====\n' "$*"; }

step "1. construct verifiable problems: 8 demo items, the teacher served by vLLM at $HUATUO_VLLM_URL"
$PY construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data --limit_num 8 \
  --model_name "$HUATUO_VLLM_MODEL" --api_url "$HUATUO_VLLM_URL" --output_dir "$OUT/stage1" \
  --structured_outputs on --max_tokens 400
STAGE1=$(ls "$OUT"/stage1/demo_data_verifiable_final_*.json | grep -v _summary)

step "2. search for complex reasoning paths: 2 of the kept problems"
$PY search_for_complex_reasoning_path.py --data_path "$STAGE1" --limit_num 2 --max_search_depth 1 \
  --max_tokens 1200 --model_name "$HUATUO_VLLM_MODEL" --api_url "$HUATUO_VLLM_URL" \
  --output_dir "$OUT/stage2" --structured_outputs on || rc=$?
# exit 1: an item failed on the endpoint (its replies cut at --max_tokens on every try, which the
# schemas sized to --max_tokens make rare);
# what was kept goes on to SFT, and a rerun retries only the failed item
if [ "${rc:-0}" -ne 0 ] && [ "${rc:-0}" -ne 1 ]; then exit "$rc"; fi
SFT_DATA=$(ls "$OUT"/stage2/*_CoT_search_final_*.json | grep -v _summary)
if [ "$($PY -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$SFT_DATA")" = 0 ]; then
  echo "stage 2 kept no record this time (a 135M teacher, unseeded sampling);" \
    "rerun this script: finished work is kept and only the failed items are asked again" >&2
  exit 1
fi

step "3. SFT of the default model on the stage-2 records ($SFT_DATA)"
$PY SFT_stage1.py --model_path "$MODEL" --data_path "$SFT_DATA" --experiment_name real_teacher_sft \
  --output_dir "$OUT/ckpts" --log_dir "$OUT/train_logs" --max_seq_len 1024 --train_bsz_per_gpu 1 \
  --gradient_accumulation_steps 1 --learning_rate 5e-4 --warmup_rates 0 --max_steps 4 \
  --gradient_checkpointing False --report_to none

printf '\nReal-teacher demo finished: stage 1 in %s/stage1, SFT data %s, SFT model in %s/ckpts/real_teacher_sft\n' \
  "$OUT" "$SFT_DATA" "$OUT"
