#!/usr/bin/env bash
# GPU benchmarks for when an accelerator is lent (<= 15 min): `vdm train`'s own denoiser step at
# the Wan-1.3B shape, 480p x 81 frames (configs/scale.py:wan1.3b_480p: bf16, full remat), a
# Wan-1.3B-shaped bare DiT with the two remat policies, then Wan2.1-T2V-1.3B itself
# (benchmarks/wan.py). Writes benchmarks/results/{train_scale,gpu_dit,wan}.json and prints tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv || true
timeout 300 "$PY" -m benchmarks train_scale --repeats 5 || echo "train_scale failed"
for remat in dots full; do
  timeout 170 "$PY" -m benchmarks gpu_dit --remat "$remat" --repeats 5 || echo "remat=$remat failed"
done
# Wan2.1-T2V-1.3B at full size (random bf16 weights): a 480x832x81 video, 50 steps, and the
# Self-Forcing-style chunk latency (benchmarks/wan.py; about 5 minutes on one H100, estimated).
timeout 420 "$PY" -m benchmarks wan --repeats 1 || echo "wan failed"
