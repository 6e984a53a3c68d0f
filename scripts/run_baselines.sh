#!/usr/bin/env bash
# The real-data baseline figures of RESULTS.md: random IPC 1/10 (protocol: 300 epochs) and the full
# training set (reduced to 50 epochs on 2 CPU cores), 3 models each, BreastMNIST and RetinaMNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDISTILL_DATA=${MEDISTILL_DATA:-$(cd ../shared/data/medmnist && pwd)}
for ds in breastmnist retinamnist; do
  for ipc in 1 10; do
    .venv/bin/medistill baseline --dataset $ds --selector random --ipc $ipc --models 3 --threads 1 \
      --json results/baselines/$ds-random-ipc$ipc.json
  done
  .venv/bin/medistill baseline --dataset $ds --selector full --epochs 50 --models 3 --threads 1 \
    --json results/baselines/$ds-full-e50.json
done
