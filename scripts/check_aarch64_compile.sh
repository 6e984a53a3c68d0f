#!/usr/bin/env bash
# Compiles every CPU source of medistill._C for aarch64 (Linux, GCC cross compiler) against the
# installed torch's headers, without linking: proves that the x86 SIMD code is guarded
# (csrc/cpu/simd/config.h) and that the portable path builds on a non-x86 target.
#
#   bash scripts/check_aarch64_compile.sh            # -c -O2 to /dev/null (full code generation)
#   MODE=syntax bash scripts/check_aarch64_compile.sh  # -fsyntax-only (faster)
#
# Needs: apt-get install -y g++-aarch64-linux-gnu. PYTHON: a Python with torch (default .venv).
# torch's headers come from the x86-64 wheel (its generated config headers describe that build, and
# pyconfig.h is the host's): close enough for a compile check of our code; no link, no run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CXX_AARCH64=${CXX_AARCH64:-aarch64-linux-gnu-g++}
MODE=${MODE:-compile}
command -v "$CXX_AARCH64" >/dev/null || { echo "no $CXX_AARCH64: apt-get update && apt-get install -y g++-aarch64-linux-gnu" >&2; exit 2; }
read -r TORCH_INC TORCH_API_INC PY_INC < <("$PY" - <<'PY'
import os, sysconfig, torch
inc = os.path.join(os.path.dirname(torch.__file__), "include")
print(inc, os.path.join(inc, "torch", "csrc", "api", "include"), sysconfig.get_paths()["include"])
PY
)
# C++20: what torch.utils.cpp_extension uses for this torch (2.14 headers need it).
FLAGS=(-std=c++20 -fPIC -fopenmp -Wall -Wno-unknown-pragmas -Werror=implicit-function-declaration
       -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -D_GLIBCXX_USE_CXX11_ABI=1
       -isystem "$TORCH_INC" -isystem "$TORCH_API_INC" -isystem "$PY_INC")
if [ "$MODE" = syntax ]; then OUT=(-fsyntax-only); else OUT=(-c -O2 -o /dev/null); fi
echo "[aarch64] $("$CXX_AARCH64" --version | head -1); mode $MODE; torch headers $TORCH_INC"

# The target really is aarch64, and the guard turns the x86 SIMD code off there.
probe=$(echo '#include "csrc/cpu/simd/config.h"
#if defined(__aarch64__) && MEDISTILL_X86_SIMD == 0
medistill_portable_path
#endif' | "$CXX_AARCH64" -x c++ -std=c++20 -E -I. - | grep -c medistill_portable_path || true)
[ "$probe" = 1 ] || { echo "[aarch64] FAIL: MEDISTILL_X86_SIMD is not 0 for aarch64" >&2; exit 1; }
# An x86 SIMD header included on aarch64 is refused with a clear #error, not an immintrin.h failure.
if echo '#include "csrc/cpu/simd/banded_rows_avx2.h"' | "$CXX_AARCH64" -x c++ -std=c++20 -fsyntax-only -I. - 2>/tmp/medistill_guard.$$; then
  echo "[aarch64] FAIL: simd/banded_rows_avx2.h compiled for aarch64" >&2; exit 1
fi
grep -q "is x86 SIMD code" /tmp/medistill_guard.$$ || { cat /tmp/medistill_guard.$$ >&2; exit 1; }
rm -f /tmp/medistill_guard.$$
echo "[aarch64] guards: MEDISTILL_X86_SIMD=0 on aarch64; the x86 headers refuse with #error"

fail=0
n=0
start=$SECONDS
for src in csrc/*.cpp csrc/cpu/*.cpp; do
  t0=$SECONDS
  if "$CXX_AARCH64" "${FLAGS[@]}" "${OUT[@]}" "$src" 2>/tmp/medistill_aarch64.$$; then
    echo "[aarch64] ok    $src ($((SECONDS - t0)) s)"
  else
    echo "[aarch64] FAIL  $src"; cat /tmp/medistill_aarch64.$$; fail=$((fail + 1))
  fi
  n=$((n + 1))
done
rm -f /tmp/medistill_aarch64.$$
echo "[aarch64] $((n - fail)) of $n sources compiled for aarch64 in $((SECONDS - start)) s"
[ "$fail" = 0 ]
