#!/usr/bin/env bash
# Creates .venv-verl: verl 0.9.1 on CPU (no CUDA wheels) with this project installed editable,
# for the checks in tests/verl_real (run: .venv-verl/bin/python -m pytest tests/verl_real).
# Idempotent: skips the install when requirements-verl-ci.txt and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-verl/bin/python ]; then
  "$PY" -m venv .venv-verl
fi
stamp=.venv-verl/.huatuo_verl_installed
want=$(cat requirements-verl-ci.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv-verl/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch pinned as a constraint too, so no dependency of verl can pull another build
  .venv-verl/bin/pip install -q -c <(grep '^torch==' requirements-verl-ci.txt) -r requirements-verl-ci.txt
  out=$(.venv-verl/bin/pip install -q --no-deps -e . 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
