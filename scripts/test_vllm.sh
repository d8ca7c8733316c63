#!/usr/bin/env bash
# The real-engine checks: sets up .venv-vllm (vLLM's CPU build, scripts/setup_vllm_env.sh) and the
# embedded default model, then runs tests/vllm_real from the main environment against one vLLM
# OpenAI server the tests start for the whole run (and stop at its end). Offline.
# Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
.venv/bin/python -m huatuo_o1.models >/dev/null
HUATUO_VLLM_PYTHON="$PWD/.venv-vllm/bin/python" .venv/bin/python -m pytest -q -p no:xdist tests/vllm_real "$@"
