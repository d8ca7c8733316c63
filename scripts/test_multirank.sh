#!/usr/bin/env bash
# The multi-rank tier: every training script launched with `accelerate launch --num_processes 2`
# under the shipped ZeRO-3 and ZeRO-2 configs, on CPU (tests/multirank). Run after the main suite
# (.ci/run); extra pytest arguments pass through (e.g. -k ppo).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline HUATUO_MULTIRANK=1
start=$(date +%s)
.venv/bin/python -m pytest -q -p no:randomly -n 0 tests/multirank "$@"
echo "multi-rank tier: $(( $(date +%s) - start )) s"
