#!/usr/bin/env bash
# The distillation figures of RESULTS.md: DC, DSA, DM, MTT at IPC 1 and 10 with the quick preset on
# one dataset (argument), scored by 3 ConvNets next to the random subset. One thread, so two
# datasets can run side by side on the 2 cores. Run folders go to runs/ (ignored); each run's
# metrics.json and summary.txt are copied to results/methods/.
set -euo pipefail
cd "$(dirname "$0")/.."
DS=${1:?usage: scripts/run_method_results.sh DATASET}
export MEDISTILL_DATA=${MEDISTILL_DATA:-$(cd ../shared/data/medmnist && pwd)}
M=".venv/bin/medistill"
mkdir -p results/methods
$M experts --dataset $DS --num-experts 3 --epochs 8 --threads 1 --out runs/experts-$DS-quick
for ipc in 1 10; do
  for method in dm dsa dc mtt; do
    name=$DS-$method-ipc$ipc-quick
    [ -f results/methods/$name.json ] && continue  # finished in an earlier run of this script
    extra=""
    [ $method = mtt ] && extra="--experts runs/experts-$DS-quick"
    $M distill --dataset $DS --method $method --ipc $ipc --preset quick --eval-models 3 --threads 1 \
      --out runs/$name --resume $extra
    cp runs/$name/metrics.json results/methods/$name.json
    cp runs/$name/summary.txt results/methods/$name.txt
  done
done
