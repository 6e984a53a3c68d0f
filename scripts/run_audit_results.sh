#!/usr/bin/env bash
# Regenerate results/audit/<name>.json: the privacy audit of every finished quick run (IPC 1 and 10) and of
# the random real subset at the same IPC (seed 0: the subset the runs are compared with), one thread.
# Reports (Markdown + pictures) go to $REPORTS/<name>/. Usage: RUNS=runs bash scripts/run_audit_results.sh [dataset ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
REPORTS=${REPORTS:-runs/audit-reports}
export MEDISTILL_DATA=${MEDISTILL_DATA:-../shared/data/medmnist}
DATASETS=("${@:-breastmnist retinamnist}")
DATASETS=(${DATASETS[*]})
mkdir -p results/audit "$REPORTS" runs/audit-inputs
# Audit settings (documented in README): 3 neighbours, flag below the 1st percentile of real-to-real NN distances,
# embedding ConvNet 10 epochs seed 0, membership attack 2 ConvNets x 100 epochs on the set, no augmentation.
AUDIT_ARGS=(--cache runs/audit-cache --threads 1 --seed 0 --quantile 0.01 --embed-epochs 10 --mia-models 2 --mia-epochs 100)

"$PY" - "${DATASETS[@]}" <<'PYEOF'
import sys
from pathlib import Path
from medistill.data import load_dataset
from medistill.selection import select
for name in sys.argv[1:]:
    dataset = load_dataset(name)
    for ipc in (1, 10):
        path = Path(f"runs/audit-inputs/{name}-random-ipc{ipc}.pt")
        if not path.exists():
            select(dataset, "random", ipc, seed=0).save(path)
PYEOF

for name in "${DATASETS[@]}"; do
  for ipc in 1 10; do
    for method in dc dsa dm mtt random; do
      label="$name-$method-ipc$ipc"
      if [ "$method" = random ]; then src="runs/audit-inputs/$label.pt"; else src="$RUNS/$label-quick"; label="$label-quick"; fi
      if [ ! -e "$src" ] || { [ -d "$src" ] && [ ! -f "$src/synthetic_set.pt" ]; }; then
        echo "skip $label (no finished run at $src)"; continue
      fi
      if [ -f "results/audit/$label.json" ] && [ -z "${FORCE:-}" ]; then echo "have results/audit/$label.json"; continue; fi
      echo "== audit $label"
      "$PY" -m medistill audit "$src" --out "$REPORTS/$label" --json "results/audit/$label.json" "${AUDIT_ARGS[@]}"
    done
  done
done
"$PY" scripts/audit_table.py
