#!/usr/bin/env bash
# Speedup past 2 workers, on a 16-core machine: `anyexec bench --workers 1,2,4,8,16`.
# Run from the repository root with the wheels of anyexec, anyexec-loky, anyexec-dask and
# their missing dependencies in .whl/ (see docs/performance.md); writes into $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
cd /tmp
nproc
python3 -m anyexec backends
python3 -m anyexec bench --workers 1,2,4,8,16 --workload cpu,io,tiny --repeat 3 \
    --json "$OUT/bench16.json" --csv "$OUT/bench16.csv" --plot "$OUT/bench16.png" -q \
    | tee "$OUT/bench16.txt"
