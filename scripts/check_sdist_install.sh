#!/usr/bin/env bash
# Packaging check (CI): build the sdist with `python -m build`, install it into a fresh virtualenv
# with the pinned torch of requirements.txt, then import it and smoke-test every op against its
# pure-PyTorch reference (scripts/smoke_ops.py) and import every module of the package with only
# the declared dependencies installed.
#
#   bash scripts/check_sdist_install.sh          # sdist only (what CI runs)
#   WHEEL=1 bash scripts/check_sdist_install.sh  # also build a wheel (compiles once more)
#   VENV=/tmp/venv bash scripts/check_sdist_install.sh  # install into this existing venv (with torch)
#                                                       # instead of creating a fresh one (local runs)
#
# The install compiles CPU kernels only (MEDISTILL_CUDA=0): the CUDA build already runs in the main
# build, and a second one would cost CI ~9 minutes. PYTHON (default .venv/bin/python) runs `build`;
# the fresh venv uses the same base interpreter. Everything happens in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/medistill-sdist.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS

# 1. The sdist (and a wheel, WHEEL=1), built from a copy of the tree: a build writes into its tree.
mkdir "$WORK/src"
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar -c --null -T - -f - | tar -x -C "$WORK/src"
# (not `import build`: run from the repo root, the build/ folder of an in-place build imports as a namespace package)
"$PY" -m pip show build >/dev/null 2>&1 || "$PY" -m pip install -q build
formats=(--sdist)
[ "${WHEEL:-0}" = 1 ] && formats+=(--wheel)
(cd "$WORK/src" && MEDISTILL_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$PY" -m build "${formats[@]}" --no-isolation --outdir "$WORK/dist" \
  >"$WORK/build.log" 2>&1) || { tail -50 "$WORK/build.log"; exit 1; }
SDIST=$(ls "$WORK"/dist/medistill-*.tar.gz)
ls -l "$WORK"/dist
# Every C++/CUDA source and header of the tree is in the sdist.
tar -tzf "$SDIST" | cut -d/ -f2- | sort >"$WORK/members.txt"
missing=$(comm -23 <(cd "$WORK/src" && find csrc -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort) \
                   "$WORK/members.txt")
[ -z "$missing" ] || { echo "[sdist] FAIL: not in the sdist: $missing" >&2; exit 1; }
grep -qx 'LICENSE' "$WORK/members.txt" || { echo "[sdist] FAIL: no LICENSE in the sdist" >&2; exit 1; }
echo "[sdist] $(basename "$SDIST"): $(grep -c '^csrc/.*\.\(h\|cuh\)$' "$WORK/members.txt") headers, LICENSE; built in $((SECONDS - t0)) s"

# 2. A fresh virtualenv: the pinned torch (from the local wheel store), the build tools, then the sdist
#    with its declared dependencies (constrained to requirements.txt's pins, so torch stays the one
#    the extension is compiled against).
t1=$SECONDS
if [ -n "${VENV:-}" ]; then
  V="$VENV/bin/python"
  "$V" -m pip uninstall -q -y medistill 2>/dev/null || true
else
  VENV="$WORK/venv"
  BASE=$("$PY" -c "import sys; print(getattr(sys, '_base_executable', sys.executable))")
  "$BASE" -m venv "$VENV"
  V="$VENV/bin/python"
  "$V" -m pip install -q --upgrade pip
fi
"$V" -m pip install -q $(grep -E '^(torch|setuptools|wheel|ninja)([=<> ]|$)' requirements.txt)
echo "[sdist] venv $VENV with $("$V" -c 'import torch; print("torch", torch.__version__)') in $((SECONDS - t1)) s"
t1=$SECONDS
MEDISTILL_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$V" -m pip install --no-build-isolation -c requirements.txt -v "$SDIST" \
  >"$WORK/install.log" 2>&1 || { tail -50 "$WORK/install.log"; exit 1; }
grep '\[medistill build\]' "$WORK/install.log" | sed 's/^ *//'
echo "[sdist] installed (compiled, MEDISTILL_CUDA=0) in $((SECONDS - t1)) s"

# 3. From outside the source tree: the installed package, its kernels against the references.
cd "$WORK"
"$V" "$REPO/scripts/smoke_ops.py" --require-kernels
"$V" - <<'PY'
import importlib, pkgutil, medistill
names = [m.name for m in pkgutil.walk_packages(medistill.__path__, "medistill.")
         if not m.name.endswith(".__main__")]  # `python -m` entry points run the CLI when imported
for name in names:
    importlib.import_module(name)  # fails on an import of an undeclared dependency
assert "site-packages" in medistill.__file__, medistill.__file__
print(f"[sdist] imported all {len(names)} modules of the installed package with its declared dependencies")
PY
"$VENV/bin/medistill" info | sed -n '1,6p'
echo "[sdist] done in $((SECONDS - t0)) s"
