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
  .venv/bin/python scripts/results_table.py methods; echo; cat docs/RESULTS.footer.md; } > RESULTS.md
