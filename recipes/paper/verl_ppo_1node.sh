#!/usr/bin/env bash
# PPO with verl 0.9.1 on one node (8 GPUs), in the verl environment, after scripts/export_verl_data.py
# (docs/verl.md). Any verl override can follow, e.g. trainer.total_training_steps=10.
set -euo pipefail
cd "$(dirname "$0")/../.."
POLICY="${POLICY:-FreedomIntelligence/HuatuoGPT-o1-8B}" MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-1024}" bash recipes/verl/run_ppo_1node.sh "$@"
