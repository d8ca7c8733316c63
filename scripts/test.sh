#!/usr/bin/env bash
# Second README command: set up, lint, and run the offline CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# one pytest worker per core, at most 4 (pytest-xdist); `-n 0` after the script's name runs serially
workers=$(.venv/bin/python -c "import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))")
.venv/bin/python -m pytest -q -n "$workers" "$@"
