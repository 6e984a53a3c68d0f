#!/usr/bin/env bash
# The predictor's evidence: the whole `study` preset grid (13 tasks from BreastMNIST, RetinaMNIST and the
# brain tumour MRI folder × random/herding/k-center/DM/DC/DSA/MTT × IPC 1 and 10; DM and DC with 3 seeds)
# in two shards at one thread each, then the report. About 10.5 CPU-hours by the cost model (≈ 5.3 h wall on
# the 2 cores);
# `medistill study --preset study --dry-run --world-size 2` prints the cells and the estimate.
#
# Resumable: run it again after an interruption and only unfinished cells are computed (a cell killed
# mid-way is redone; a distillation resumes from its checkpoint). Each shard takes the other's unclaimed
# cells when it is done (--steal), so both end together. Logs: results/study/shard-{0,1}.log.
#
#   scripts/run_study.sh            # the grid, then the report
#   scripts/run_study.sh --dry-run  # the cell list and the cost estimate only
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDISTILL_DATA=${MEDISTILL_DATA:-$(cd ../shared/data/medmnist && pwd)}
export OMP_NUM_THREADS=1
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-30}  # progress bars into log files: one line every 30 s, not 10 a second
M=".venv/bin/medistill"
OUT=results/study
RUNS=runs/study
COMMON=(study --preset study --out "$OUT" --runs "$RUNS" --threads 1 --world-size 2)
if [ "${1:-}" = "--dry-run" ]; then
  exec $M "${COMMON[@]}" --dry-run
fi
mkdir -p "$OUT"
pids=()
for rank in 0 1; do
  $M "${COMMON[@]}" --rank $rank --steal > "$OUT/shard-$rank.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
$M report --table "$OUT/study.csv" --out "$OUT"
exit $status
