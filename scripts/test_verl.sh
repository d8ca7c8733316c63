#!/usr/bin/env bash
# The verl checks: sets up .venv-verl (verl 0.9.1 on CPU, scripts/setup_verl_env.sh) and runs
# tests/verl_real against the real verl package, offline. Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_verl_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
.venv-verl/bin/python -m pytest -q tests/verl_real "$@"
