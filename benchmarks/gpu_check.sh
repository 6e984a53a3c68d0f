#!/usr/bin/env bash
# One-shot GPU check for a CUDA machine with no internet (e.g. the lent H100/H200): builds
# medistill._C in place with that machine's own torch, runs the op and CUDA method tests, then the
# benchmarks on the GPU, and writes everything under $OUT (default ./gpu_results).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# The whole run keeps to DEADLINE seconds (default 540): each stage gets at most its own budget and
# never more than what is left, most important first (build, tests, method benchmarks, profiles,
# DSA benchmarks, variants, an end-to-end run), so a cut-off run still returns the early results.
# SKIP_TESTS=1 skips the tests; ONLY="build bench_methods ..." runs just the stages named;
# METHOD_RUNS=N repeats the method benchmarks N times (bench_methods, bench_methods_run2, ...).
# MEDISTILL_DATA=<folder with breastmnist.npz> adds end-to-end DC and DM runs on real BreastMNIST
# (the device machine does not carry ../shared: copy the file along, and medmnist if it is missing).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
START=$(date +%s)
DEADLINE=${DEADLINE:-540}
STAGES="$OUT/stages.txt"

# budget N: seconds for the next stage, at most N and at most what is left (0 when time is up).
budget() { local left=$((DEADLINE - ($(date +%s) - START))); [ "$left" -lt "$1" ] && echo $((left > 0 ? left : 0)) || echo "$1"; }
# stage NAME MAX CMD...: run CMD under `timeout`, record its exit code and seconds in stages.txt.
stage() {
  local name=$1 max=$2; shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local t; t=$(budget "$max")
  if [ "$t" -lt 5 ]; then echo "$name: skipped (out of time)" | tee -a "$STAGES"; return; fi
  echo "== $name (up to ${t}s)"
  local s0; s0=$(date +%s)
  timeout "$t" "$@"; local rc=$?
  echo "$name: rc=$rc in $(( $(date +%s) - s0 ))s (budget ${t}s)" | tee -a "$STAGES"
}

{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

ARCH=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}')")
build() {
  MEDISTILL_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH} MAX_JOBS=${MAX_JOBS:-16} \
    $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; return 1; }
}
export -f build; export PY OUT ARCH
stage build 300 bash -c build
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
    export CC=/usr/bin/gcc CXX=/usr/bin/g++ NVCC_PREPEND_FLAGS="-ccbin /usr/bin/g++"
    stage rebuild 300 bash -c build
    $PY -c "$RAISES" 2>&1 | tee -a "$OUT/machine.txt"
  fi
fi

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # (not tests/test_dsa_cuda_emulated.py: it runs the CUDA kernels on the host, for machines without a GPU)
  OP_TESTS=$(ls tests/test_channel_normalize.py tests/test_dsa*.py tests/test_losses*.py tests/test_norm*.py \
    tests/test_models.py tests/test_cuda*.py 2>/dev/null | grep -v cuda_emulated)
  stage tests 120 $PY -m pytest -q -p no:cacheprovider $OP_TESTS -rs --durations=5 > "$OUT/op_tests.txt" 2>&1
  tail -15 "$OUT/op_tests.txt"
fi

# bench NAME MAX FILE... [-- pytest args]: the GPU benchmarks, 16 CPU threads, ratios in NAME.json.
bench() {
  local name=$1 max=$2; shift 2
  MEDISTILL_BENCH_DEVICE=cuda MEDISTILL_BENCH_THREADS=16 MEDISTILL_BENCH_RATIOS="$OUT/$name.json" \
    stage "$name" "$max" $PY -m pytest -q -p no:cacheprovider "$@" --benchmark-json="$OUT/${name}_raw.json" \
    > "$OUT/$name.txt" 2>&1
  grep -A30 "medistill vs reference" "$OUT/$name.txt" || tail -20 "$OUT/$name.txt"
}
for i in $(seq 1 "${METHOD_RUNS:-1}"); do
  bench "bench_methods$([ "$i" -gt 1 ] && echo "_run$i")" 150 benchmarks/bench_methods.py
done
stage profile_methods 60 $PY -m benchmarks.profile_methods_cuda > "$OUT/profile_methods.txt" 2>&1
grep "^==" "$OUT/profile_methods.txt"
bench bench_dsa 120 benchmarks/bench_dsa.py --benchmark-min-rounds=20 --benchmark-max-time=0.5
stage profile_dsa_host 40 $PY -m benchmarks.profile_dsa_host > "$OUT/dsa_host_profile.txt" 2>&1
MEDISTILL_BENCH_CLASS_BATCHING=loop bench bench_methods_loop 45 benchmarks/bench_methods.py -k "dc_outer_step"
MEDISTILL_BENCH_CUDNN_BENCHMARK=none bench bench_methods_no_autotune 45 benchmarks/bench_methods.py \
  -k "dm_iteration or dc_outer_step"
if [ -f "${MEDISTILL_DATA:-/nonexistent}/breastmnist.npz" ]; then
  for batching in vmap loop; do  # the same run with DC's class gradients vmapped and looped
    stage "distill_dc_breast_$batching" 100 $PY -m medistill distill --dataset breastmnist --method dc --ipc 10 \
      --preset quick --set class_batching=$batching --device cuda --out "$OUT/run_dc_breast_$batching" \
      --eval-models 3 > "$OUT/distill_dc_breast_$batching.txt" 2>&1
    tail -8 "$OUT/distill_dc_breast_$batching.txt"
  done
  stage distill_dm_breast 100 $PY -m medistill distill --dataset breastmnist --method dm --ipc 10 --preset quick \
    --device cuda --out "$OUT/run_dm_breast" --eval-models 3 > "$OUT/distill_dm_breast.txt" 2>&1
  tail -8 "$OUT/distill_dm_breast.txt"
fi
echo "total $(( $(date +%s) - START ))s; results in $OUT"
