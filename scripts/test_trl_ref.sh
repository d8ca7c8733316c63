#!/usr/bin/env bash
# The PPO reference checks: sets up .venv-trl-ref (trl 1.12.0 on CPU, scripts/setup_trl_ref_env.sh)
# and runs tests/trl_ref (one update of our PPO equals one of trl 1.12's PPOTrainer), then
# tests/test_trl_update.py in the main environment against trl 1.12.0, offline.
# Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_trl_ref_env.sh
export HUATUO_TRL_REF=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
.venv-trl-ref/bin/python -m pytest -q tests/trl_ref "$@"
# GRPO, RLOO and DPO: one loss and gradient under the main environment's trl equal those under trl
# 1.12.0 (tests/test_trl_update.py, with that trl alone unpacked beside the reference environment).
ref=.venv-trl-ref/trl-1.12.0
[ -d "$ref/trl" ] || .venv-trl-ref/bin/pip install -q --no-deps --target "$ref" trl==1.12.0
TRL_REFERENCE=$ref .venv/bin/python -m pytest -q tests/test_trl_update.py "$@"
