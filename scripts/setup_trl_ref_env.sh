#!/usr/bin/env bash
# Creates .venv-trl-ref: trl 1.12.0 (the last trl with PPOTrainer) on CPU with this project installed
# editable, for tests/trl_ref (run: bash scripts/test_trl_ref.sh). The torch CPU build is the one
# pinned by constraints.txt (pip takes it from its cache when the main environment installed it).
# Idempotent: skips the install when requirements-trl-ref.txt, constraints.txt and pyproject.toml
# are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-trl-ref/bin/python ]; then
  "$PY" -m venv .venv-trl-ref
fi
stamp=.venv-trl-ref/.huatuo_trl_ref_installed
want=$(cat requirements-trl-ref.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv-trl-ref/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv-trl-ref/bin/pip install -q -c constraints.txt -r requirements-trl-ref.txt
  out=$(.venv-trl-ref/bin/pip install -q --no-deps -e . 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
