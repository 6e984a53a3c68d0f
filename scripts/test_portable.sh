#!/usr/bin/env bash
# The portable CPU path, tested here and not only compiled: builds medistill._C with
# MEDISTILL_SIMD=off MEDISTILL_CUDA=0 (no x86 SIMD code: what aarch64 and other targets build) into a
# temporary copy of the tree, checks that the loaded build really is the portable one, and runs the
# op tests against it (DSA: kernel vs the pure-PyTorch reference, forward and gradients, opcheck,
# gradcheck; and the other ops' kernel-vs-reference tests, whose hot loops lose their AVX2 copies).
#
#   bash scripts/test_portable.sh                 # PYTHON (default .venv/bin/python) needs torch + pytest
#   KEEP=1 bash scripts/test_portable.sh          # keep the build folder (printed) for benchmarks
#   TESTS="tests/test_dsa.py" bash scripts/test_portable.sh
#
# The repository's own build (.venv) is not touched: the copy is imported first (pytest runs in it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
TESTS=${TESTS:-tests/test_dsa.py tests/test_losses_gradient_match.py tests/test_losses_distribution_match.py tests/test_losses_trajectory_match.py tests/test_norm_relu_pool.py tests/test_channel_normalize.py}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/medistill-portable.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

# Tracked and untracked-but-not-ignored files: what a clean clone (plus local edits) holds.
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar -c --null -T - -f - | tar -x -C "$WORK"
cd "$WORK"
echo "[portable] building medistill._C in $WORK (MEDISTILL_SIMD=off MEDISTILL_CUDA=0)"
t0=$SECONDS
MEDISTILL_SIMD=off MEDISTILL_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$PY" setup.py -q build_ext --inplace >build.log 2>&1 \
  || { cat build.log; exit 1; }
grep '\[medistill build\]' build.log
echo "[portable] built in $((SECONDS - t0)) s"
"$PY" - <<'PY'
import medistill, os
info = medistill.build_info()
assert medistill.__file__.startswith(os.getcwd()), f"imported {medistill.__file__}, not the portable copy"
assert info["ops_loaded"], info["load_error"]
assert info["cpu_simd"].startswith("portable (MEDISTILL_SIMD=off"), info["cpu_simd"]
print("[portable] loaded:", info["cpu_simd"], "| build:", info["cpu_simd_build"], "| OpenMP:", info["openmp"])
PY
t0=$SECONDS
# shellcheck disable=SC2086
"$PY" -m pytest -q -p no:cacheprovider $TESTS
echo "[portable] op tests in $((SECONDS - t0)) s"
[ "${KEEP:-0}" = 1 ] && echo "[portable] kept $WORK"
exit 0
