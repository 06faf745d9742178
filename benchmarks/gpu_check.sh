#!/usr/bin/env bash
# One prepared accelerator check for a machine with one GPU, in at most 8 minutes; writes one JSON report.
#
#   bash benchmarks/gpu_check.sh [--out report.json] [--authors-repo PATH] [--budget SECONDS]
#   bash benchmarks/gpu_check.sh --cpu          # the same steps on the CPU, small budget (the test suite runs this)
#   bash benchmarks/gpu_check.sh --prepare-wheels   # on a machine with a package registry: fill .whl/
#
# It runs from this checkout against the PyTorch it finds (PYTHONPATH=src, nothing installed over it) and never
# downloads anything: Python packages the GPU machine lacks are installed from .whl/ (made beforehand with
# --prepare-wheels and carried along), or the script stops with one line naming them.
set -euo pipefail
CALLER=$PWD  # relative --out and --authors-repo are the caller's: gpu_check.py runs from here
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
# importable module -> the package that provides it (what the checks and the package need)
NEEDED="numpy:numpy PIL:pillow safetensors:safetensors tqdm:tqdm pytest:pytest pluggy:pluggy iniconfig:iniconfig
packaging:packaging"

if [[ "${1:-}" == "--prepare-wheels" ]]; then
  pkgs=$(for pair in $NEEDED; do echo -n "${pair#*:} "; done)
  for v in 3.10 3.11 3.12 3.13; do  # binary wheels for each Python a GPU machine may have
    "$PY" -m pip download -q -d .whl --only-binary=:all: --python-version "$v" \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 $pkgs einops PyWavelets pytorch_wavelets \
      --no-deps || echo "note: some wheels for Python $v were not found"
  done
  echo "wheels in .whl/: $(ls .whl | wc -l) files; carry .whl to the GPU machine with the checkout"
  exit 0
fi

"$PY" -c "import torch" 2>/dev/null || { echo "error: $PY cannot import torch; set PYTHON to the Python that has it"; exit 2; }
missing=""
# installed or not, without importing it (pytorch_wavelets imports pkg_resources, which current setuptools lacks:
# side_by_side.py gives it a stand-in)
installed() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
for pair in $NEEDED; do
  installed "${pair%%:*}" || missing="$missing ${pair#*:}"
done
if [[ "$*" == *--authors-repo* ]]; then
  for pair in einops:einops pywt:PyWavelets pytorch_wavelets:pytorch_wavelets; do
    installed "${pair%%:*}" || missing="$missing ${pair#*:}"
  done
fi
if [[ -n "$missing" ]]; then
  if [[ -d .whl ]]; then
    echo "[gpu_check] installing from .whl/ (no network):$missing"
    "$PY" -m pip install -q --no-index --no-deps --find-links .whl $missing
  else
    echo "error: missing Python packages:$missing; run 'bash benchmarks/gpu_check.sh --prepare-wheels' where a registry is reachable and carry .whl/ along"
    exit 2
  fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$CALLER"
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
