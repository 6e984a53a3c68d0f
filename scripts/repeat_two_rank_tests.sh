#!/usr/bin/env bash
# The two-rank tests of tests/test_distributed.py (DC and DSA two ranks = one process, DM two-rank checkpoint
# resumed in one process, experts two ranks = one process), N times in a row (default 20), one line per run:
# start time, seconds, load average, pytest's summary. Run it while other work loads every core to check the
# distributed teardown under load (issue #22). Exit status: 1 if any run failed.
#
#   scripts/repeat_two_rank_tests.sh [N] | tee results/reliability/two_rank_runs.log
set -uo pipefail
cd "$(dirname "$0")/.."
export MEDISTILL_DATA=${MEDISTILL_DATA:-$(cd ../shared/data/medmnist && pwd)} OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
failed=0
for i in $(seq 1 "${1:-20}"); do
  start=$(date +%s)
  out=$($PY -m pytest -q -p no:cacheprovider tests/test_distributed.py -k "two_ranks" 2>&1 | tail -1)
  case "$out" in *failed*|*error*) failed=1 ;; esac
  echo "run $i $(date -u +%H:%M:%S) $(( $(date +%s) - start ))s load=$(cut -d' ' -f1 /proc/loadavg) :: $out"
done
exit $failed
