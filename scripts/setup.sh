#!/usr/bin/env bash
# Set up medistill in .venv/ (repo root), build its compiled ops, then run the main job on the
# bundled real data. `scripts/setup.sh --install-only` stops after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "[setup] installing requirements (torch from the local wheel store; ~2-3 min the first time)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
echo "[setup] building medistill._C (MEDISTILL_CUDA=${MEDISTILL_CUDA:-auto})"
MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python -m pip install -q --no-build-isolation --no-deps -e .
.venv/bin/python -c "import medistill, json; info = medistill.build_info(); print('[setup] ops loaded:', info['ops_loaded'], '| CUDA kernels compiled:', info['cuda_kernels_compiled'], '|', info['cuda_decision'])"

if [ -z "${MEDISTILL_DATA:-}" ] && [ -d "$REPO/../shared/data/medmnist" ]; then
  export MEDISTILL_DATA=$(cd "$REPO/../shared/data/medmnist" && pwd)
fi
[ "${1:-}" = "--install-only" ] && exit 0

.venv/bin/medistill info
echo "[setup] main job: distil BreastMNIST to 10 images per class with DM (quick preset), then score it against a random subset"
.venv/bin/medistill distill --dataset breastmnist --method dm --ipc 10 --preset quick --eval-models 3 \
  --out runs/breastmnist-dm-ipc10-quick --resume
