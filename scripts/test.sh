#!/usr/bin/env bash
# Run the test suite against the bundled real MedMNIST files (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MEDISTILL_DATA:-}" ] && [ -d ../shared/data/medmnist ]; then
  export MEDISTILL_DATA=$(cd ../shared/data/medmnist && pwd)
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
