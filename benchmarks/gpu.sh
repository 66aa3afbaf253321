#!/usr/bin/env bash
# GPU benchmark for when an accelerator is lent (<= 6 min): a Wan-1.3B-shaped DiT in bf16, with the
# two remat policies. Writes benchmarks/results/gpu_dit.json (the last run) and prints tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv || true
for remat in dots full; do
  timeout 170 "$PY" -m benchmarks gpu_dit --remat "$remat" --repeats 5 || echo "remat=$remat failed"
done
