#!/usr/bin/env bash
# First README command: set up, then run the whole pipeline on the embedded default model, on CPU.
# API stages run as dry runs (request counts + cost estimates, no key needed); SFT, a few PPO steps
# and evaluation run for real on SmolLM2-135M-Instruct. Outputs go to demo_out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
PY=.venv/bin/python
MODEL=models/SmolLM2-135M-Instruct
OUT=demo_out
mkdir -p "$OUT"

step() { printf '\n==== %s ====\n' "$*"; }

step "0. embedded default model -> $MODEL"
$PY -m huatuo_o1.models "$MODEL"

step "1. construct verifiable problems (dry run: requests and cost, no network)"
$PY construct_verifiable_medical_problems.py --data_path data/demo_data.json --filter_data --model_name gpt-4o --dry_run

step "2. search for complex reasoning paths (dry run)"
$PY search_for_complex_reasoning_path.py --data_path data/demo_data.json --efficient_search True \
  --max_search_attempts 1 --max_search_depth 2 --model_name gpt-4o --dry_run

# STAGE3_DEMO
# STAGE4_DEMO
# STAGE5_DEMO
