#!/usr/bin/env bash
# One-shot GPU check for a CUDA machine with no internet (e.g. the lent H100/H200): builds
# medistill._C in place with that machine's own torch, runs the op tests (CPU and CUDA cases),
# then the op benchmarks on the GPU, and writes everything under $OUT (default ./gpu_results).
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh      (fits in ~10 minutes on 16 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

echo "== build (in place, this machine's torch)"
ARCH=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}')")
MEDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH} MAX_JOBS=${MAX_JOBS:-16} \
  $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
$PY -c "import medistill, json; print(json.dumps(medistill.build_info(), indent=1))" | tee "$OUT/build_info.json"

echo "== op tests (CPU and CUDA cases)"
OP_TESTS=$(ls tests/test_channel_normalize.py tests/test_dsa*.py tests/test_losses*.py tests/test_cuda*.py 2>/dev/null)
$PY -m pytest -q -p no:cacheprovider $OP_TESTS -rs --junitxml="$OUT/op_tests.xml" 2>&1 | tail -30 | tee "$OUT/op_tests.txt"

echo "== op benchmarks on the GPU (reference vs medistill, same run)"
MEDISTILL_BENCH_DEVICE=cuda MEDISTILL_BENCH_THREADS=16 MEDISTILL_BENCH_RATIOS="$OUT/bench_ratios_cuda.json" \
  $PY -m pytest -q -p no:cacheprovider benchmarks/bench_*.py --benchmark-min-rounds=20 \
  --benchmark-json="$OUT/bench_cuda.json" 2>&1 | grep -A40 "medistill vs reference" | tee "$OUT/bench_cuda.txt"
echo "results in $OUT"
