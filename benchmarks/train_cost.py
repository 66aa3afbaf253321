"""What a denoiser training step costs in `vdm train`, with and without the latent cache and bf16
matmuls, and the wall time to the spine's direction accuracy that follows from it.

  python -m benchmarks train_cost [--config configs/spine.py] [--steps 40] [--num-train 2048]
                                  [--steps-to-target 4000] [--repeats 2]

Each variant runs the real denoiser stage (`vdm.train.run`, the spine's VAE from
checkpoints/spine via vae.init_from, the same data, seed and batches) for --steps steps; the time
per step is read from its metrics.jsonl between the first logged step and the last, so it
excludes compilation and includes everything a step does: reading and decoding the records (or
the cached latents), tokenizing, VAE encoding (without the cache) and the jitted step. The cache
variants also report building the cache (encoding every clip once), per clip.

Neither change alters what training computes: the same batches reach the same update (the
cache stores the encoder's deterministic posterior means; bf16 rounds the matmul inputs only,
whose loss curves stay within 0.2 % of fp32, see the train_step benchmark), so the steps to a
given accuracy are the same and the wall time to it scales with the time per step:
time = steps_to_target x time per step (+ the cache's build for the dataset's size).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from benchmarks.common import write

VARIANTS = (  # (row name, dit.matmul_dtype, train.dit.cache)
    ("before: fp32, VAE-encode every batch", "float32", False),
    ("bf16 matmuls", "bfloat16", False),
    ("latent cache", "float32", True),
    ("after: bf16 + latent cache (default)", "bfloat16", True),
)


def seconds_per_step(metrics_path: str) -> float:
  lines = [json.loads(l) for l in open(metrics_path)]
  first, last = lines[0], lines[-1]
  return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks train_cost")
  parser.add_argument("--config", default="configs/spine.py")
  parser.add_argument("--vae", default="checkpoints/spine", help="model directory of the VAE")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--log-every", type=int, default=10)
  parser.add_argument("--num-train", type=int, default=2048)
  parser.add_argument("--dataset-size", type=int, default=20_000,
                      help="the clips a full run caches (the spine's data.num_train)")
  parser.add_argument("--steps-to-target", type=int, default=4000,
                      help="denoiser steps the spine took to 85 %% direction (experiments/spine)")
  parser.add_argument("--repeats", type=int, default=2,
                      help="rounds over the variants (interleaved, so load drifts hit all)")
  parser.add_argument("--set", action="append", default=[], help="extra config overrides")
  parser.add_argument("--name", default="train_cost")
  args = parser.parse_args(argv)
  os.environ["VDM_NO_PROGRESS"] = "1"
  from vdm.config import load_config
  from vdm.models import load_vae
  from vdm.train.latent_cache import build_latent_cache
  from vdm.train.run import dataset_builder, run_training
  steps = {name: [] for name, _, _ in VARIANTS}
  cache_per_clip = {name: 0.0 for name, _, _ in VARIANTS}
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, "data")
    for round_ in range(args.repeats):
      for name, dtype, cache in VARIANTS:
        config = load_config(args.config, [
            f"vae.init_from='{args.vae}'", f"dit.matmul_dtype='{dtype}'",
            f"train.dit.cache={cache}", f"train.dit.steps={args.steps}",
            f"train.dit.log_every={args.log_every}", f"train.dit.checkpoint_every={args.steps}",
            f"data.num_train={args.num_train}", f"data.data_dir='{data_dir}'", *args.set])
        workdir = os.path.join(tmp, f"{round_}_" + name.split(":")[0].replace(" ", "_"))
        if cache and round_ == 0:  # built once; later rounds find it
          builder = dataset_builder(config, workdir)
          t0 = time.perf_counter()
          build_latent_cache(builder, "train", load_vae(args.vae, config), config.vae)
          cache_per_clip[name] = (time.perf_counter() - t0) / args.num_train
        run_training(config, workdir, until="dit")
        steps[name].append(seconds_per_step(os.path.join(workdir, "dit", "metrics.jsonl")))
  rows = []
  for name, _, _ in VARIANTS:
    step = min(steps[name])
    cache_build = cache_per_clip[name] * args.dataset_size
    rows.append(dict(variant=name, s_per_step=step, s_per_step_median=statistics.median(
        steps[name]), cache_ms_per_clip=1000 * cache_per_clip[name],
        to_target_min=(args.steps_to_target * step + cache_build) / 60.0))
  base = rows[0]["to_target_min"]
  for row in rows:
    row["speedup"] = base / row["to_target_min"]
  write(args.name, rows, dict(config=args.config, steps=args.steps, repeats=args.repeats,
                              per_round_s_per_step=steps, num_train=args.num_train,
                              dataset_size=args.dataset_size,
                              steps_to_target=args.steps_to_target, overrides=args.set,
                              glibc_tunables=os.environ.get("GLIBC_TUNABLES", "")))
