#!/usr/bin/env bash
# Regenerate RESULTS.md's tables from results/*.json (the prose around them is in RESULTS.header.md).
set -euo pipefail
cd "$(dirname "$0")/.."
{ cat docs/RESULTS.header.md; echo; echo "## Real-data baselines"; echo;
  echo 'Command: `bash scripts/run_baselines.sh` (JSON per row in `results/baselines/`).'; echo;
  .venv/bin/python scripts/results_table.py baselines; echo;
  echo "## Distilled sets (quick preset) next to the random subset"; echo;
  echo 'Command: `bash scripts/run_method_results.sh breastmnist` and `… retinamnist` (run side by side, one thread each;'
  echo 'metrics and summaries per run in `results/methods/`). Each cell: distilled set and random real subset at the'
  echo 'same IPC, 3 ConvNets each, 300 epochs, trained with DSA augmentation for DSA/DM/MTT sets and without for DC.'; echo;
  .venv/bin/python scripts/results_table.py methods; echo; cat docs/RESULTS.footer.md; echo;
  echo "## Privacy audit of the distilled sets"; echo;
  echo 'Command: `RUNS=runs bash scripts/run_audit_results.sh` then `.venv/bin/python scripts/audit_table.py`'
  echo '(JSON per set in `results/audit/`, reports with the image pairs in `runs/audit-reports/<set>/`). A random real'
  echo 'subset *is* patient data: its rows show what the audit reports for real images.'; echo;
  .venv/bin/python scripts/audit_table.py; echo; cat docs/RESULTS.audit.md;
  if [ -f results/study/report.md ]; then echo; echo "## Study: does the random-subset indicator predict distillation?"; echo;
    echo 'Commands: the `medistill study` / `medistill report` lines of README.md ("Predicting distillation success");'
    echo 'the full report with its table, fits and scatter plot is [results/study/report.md](results/study/report.md).'; echo;
    sed -n '/^## What these numbers can support/,/^## Results/p' results/study/report.md | sed '1d;$d'; fi; } > RESULTS.md
