#!/usr/bin/env bash
# PPO on one node with verl 0.9.1 (in its own environment: see docs/verl.md).
#
#   python scripts/export_verl_data.py --data_path FreedomIntelligence/medical-o1-verifiable-problem \
#       --tokenizer FreedomIntelligence/HuatuoGPT-o1-8B --output_dir data/verl
#   bash recipes/verl/run_ppo_1node.sh [more verl overrides, e.g. trainer.total_training_steps=10]
#
# Same data, prompts and reward as RL_stage2.py; settings in ppo_args.sh. A rerun resumes from the
# newest checkpoint in CKPT_DIR (trainer.resume_mode=auto).
set -euo pipefail
NNODES=1
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
source "$(dirname "${BASH_SOURCE[0]}")/ppo_args.sh"

python -m verl.trainer.main_ppo "${PPO_ARGS[@]}" "$@"
