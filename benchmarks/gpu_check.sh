#!/usr/bin/env bash
# One-shot GPU check for a CUDA machine with no internet (e.g. the lent H100/H200): builds
# medistill._C in place with that machine's own torch, runs the op tests (CPU and CUDA cases),
# then the op benchmarks on the GPU, and writes everything under $OUT (default ./gpu_results).
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh      (fits in ~10 minutes on 16 cores)
# BENCH_FILES="benchmarks/bench_dsa.py" limits the benchmarks; SKIP_TESTS=1 skips the op tests.
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
  timeout ${BUILD_TIMEOUT:-330} $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
$PY -c "import medistill, json; print(json.dumps(medistill.build_info(), indent=1))" | tee "$OUT/build_info.json"

# A C++ exception thrown by an op (bad input) must reach Python as RuntimeError. Images whose
# default g++ is not the toolchain that built torch can crash there (seen: /opt/gcc on the lent
# H200); then preload that compiler's runtime, and failing that rebuild with the system g++.
RAISES='import torch, medistill
try:
    torch.ops.medistill.channel_normalize(torch.zeros(1, 3, 2, 2), torch.zeros(2), torch.ones(3))
except RuntimeError as e:
    print("exception reaches Python:", str(e).splitlines()[0])'
{
  echo "g++: $(command -v g++) $(g++ -dumpfullversion 2>/dev/null)"; ldd medistill/_C*.so | grep -E "stdc|gcc_s|gomp"
} 2>&1 | tee -a "$OUT/machine.txt"
if ! $PY -c "$RAISES" 2>&1 | tee -a "$OUT/machine.txt" | grep -q "reaches Python"; then
  PRELOAD="$(g++ -print-file-name=libstdc++.so.6):$(g++ -print-file-name=libgcc_s.so.1)"
  if LD_PRELOAD="$PRELOAD" $PY -c "$RAISES" 2>&1 | tee -a "$OUT/machine.txt" | grep -q "reaches Python"; then
    export LD_PRELOAD="$PRELOAD"; echo "using LD_PRELOAD=$PRELOAD" | tee -a "$OUT/machine.txt"
  elif [ -x /usr/bin/g++ ]; then
    echo "rebuilding with /usr/bin/g++" | tee -a "$OUT/machine.txt"
    rm -rf build medistill/_C*.so
    CC=/usr/bin/gcc CXX=/usr/bin/g++ MEDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH} \
      MAX_JOBS=${MAX_JOBS:-16} NVCC_PREPEND_FLAGS="-ccbin /usr/bin/g++" \
      timeout ${BUILD_TIMEOUT:-330} $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    $PY -c "$RAISES" 2>&1 | tee -a "$OUT/machine.txt"
  fi
fi

if [ "${SKIP_TESTS:-0}" != 1 ]; then
echo "== op tests (CPU and CUDA cases)"
OP_TESTS=$(ls tests/test_channel_normalize.py tests/test_dsa*.py tests/test_losses*.py tests/test_norm*.py tests/test_models.py tests/test_cuda*.py 2>/dev/null)
timeout ${TEST_TIMEOUT:-200} $PY -m pytest -q -p no:cacheprovider $OP_TESTS -rs --durations=5 > "$OUT/op_tests.txt" 2>&1; tail -30 "$OUT/op_tests.txt"
fi

echo "== DSA host-side profile (one call at a time)"
timeout ${PROFILE_TIMEOUT:-60} $PY -m benchmarks.profile_dsa_host 2>&1 | tee "$OUT/dsa_host_profile.txt"

echo "== op benchmarks on the GPU (reference vs medistill, same run)"
MEDISTILL_BENCH_DEVICE=cuda MEDISTILL_BENCH_THREADS=16 MEDISTILL_BENCH_RATIOS="$OUT/bench_ratios_cuda.json" \
  timeout ${BENCH_TIMEOUT:-240} $PY -m pytest -q -p no:cacheprovider ${BENCH_FILES:-benchmarks/bench_*.py} --benchmark-min-rounds=20 \
  --benchmark-max-time=0.5 \
  --benchmark-json="$OUT/bench_cuda.json" > "$OUT/bench_cuda.txt" 2>&1; grep -A40 "medistill vs reference" "$OUT/bench_cuda.txt" || tail -40 "$OUT/bench_cuda.txt"
echo "results in $OUT"
