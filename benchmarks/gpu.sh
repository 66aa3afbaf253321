#!/usr/bin/env bash
# GPU benchmark for when an accelerator is lent (<= 10 min): `vdm train`'s own denoiser step at the
# Wan-1.3B shape, 480p x 81 frames (configs/scale.py:wan1.3b_480p: bf16, full remat), then a
# Wan-1.3B-shaped bare DiT with the two remat policies. Writes benchmarks/results/train_scale.json
# and gpu_dit.json (the last run) and prints tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv || true
timeout 300 "$PY" -m benchmarks train_scale --repeats 5 || echo "train_scale failed"
for remat in dots full; do
  timeout 170 "$PY" -m benchmarks gpu_dit --remat "$remat" --repeats 5 || echo "remat=$remat failed"
done
