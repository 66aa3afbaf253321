"""`vdm train`'s own denoiser step at scale: the step the loop runs (vdm.train.loop.plan_step: the
config's mesh, remat, precision, accumulation, AdamW, EMA) on a fixed synthetic batch, timed, with
its model FLOP utilisation and peak memory. The benchmark for Must-show 5 of issue #17: Wan-1.3B's
shape at 480p x 81 frames (configs/scale.py:wan1.3b_480p) on one GPU.

MFU = the DiT's analytic train FLOPs (benchmarks/flops.py; the text encoder's are not counted) per
second over the bf16 (or fp32, by train.dit.precision) matmul peak measured in the same run. Peak
memory: the device's `peak_bytes_in_use` where it reports one (GPU, TPU), else XLA's compiled
memory analysis (CPU).

  python -m benchmarks train_scale [--config configs/scale.py:wan1.3b_480p] [--set F=V ...]
                                   [--repeats 5] [--tiny]
"""
from __future__ import annotations

import argparse
import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import timed, write
from benchmarks.flops import dit_forward_flops, train_step_flops
from benchmarks.train_step import matmul_peak

TINY = ["dit.width=64", "dit.depth=2", "dit.heads=4", "dit.mlp_ratio=2.0", "text.width=32",
        "text.depth=1", "text.heads=2", "text.mlp=64", "text.vocab_size=256",
        "text.max_length=8", "data.height=64", "data.width=64", "data.frames=9",
        "sample.resolution=64", "sample.aspect='1:1'", "sample.seconds=0.5"]


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks train_scale")
  parser.add_argument("--config", default="configs/scale.py:wan1.3b_480p")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--tiny", action="store_true", help="toy widths and clips (CPU smoke test)")
  args = parser.parse_args(argv)
  from vdm.config import load_config
  from vdm.models import build_denoiser
  from vdm.parallel.placement import Placement
  from vdm.train.loop import plan_step
  from vdm.train.objectives import denoiser_loss
  from vdm.train.plan import denoiser_batch_shapes

  config = load_config(args.config, (TINY if args.tiny else []) + args.set)
  cfg = config.train.dit
  placement = Placement.from_config(config.parallel, config.dit.attention)
  placement.check_batch(cfg.batch_size, "train.dit.batch_size", cfg.accumulate)
  plan = plan_step(functools.partial(build_denoiser, config, config.text.vocab_size, 0),
                   functools.partial(denoiser_loss, cfg=config.diffusion,
                                     temporal_patch=config.dit.temporal_patch),
                   cfg, placement, seed=0)
  rng = np.random.default_rng(0)
  host = {}
  for name, (shape, dtype) in denoiser_batch_shapes(config).items():
    if np.dtype(dtype) == np.bool_:
      host[name] = np.ones(shape, bool)
    elif np.issubdtype(np.dtype(dtype), np.integer):
      host[name] = rng.integers(2, config.text.vocab_size, shape).astype(dtype)
    else:
      host[name] = rng.standard_normal(shape).astype(dtype)
  batch = placement.place_batch(host, cfg.batch_size)
  with placement.activate():
    compiled = plan.step.lower(plan.abstract, batch).compile()
    state = [plan.init()]

    def one_step():
      state[0], metrics, _, _ = plan.step(state[0], batch)
      jax.block_until_ready(metrics["loss"])

    first, times = timed(one_step, args.repeats)
  dtype = jnp.bfloat16 if cfg.precision == "bfloat16" else jnp.float32
  on_cpu = jax.devices()[0].platform == "cpu"
  peak = matmul_peak(512 if args.tiny or on_cpu else 8192, dtype=dtype) * placement.mesh.size
  latents = denoiser_batch_shapes(config)["latents"][0]
  d = config.dit
  forward = dit_forward_flops(
      batch=cfg.batch_size, frames=latents[1],
      tokens_per_frame=(latents[2] // d.patch) * (latents[3] // d.patch),
      text_tokens=config.text.max_length, width=d.width, depth=d.depth,
      mlp_ratio=d.mlp_ratio, patch_dim=d.patch ** 2 * latents[4], attention=d.attention)
  stats = jax.devices()[0].memory_stats() or {}
  memory = compiled.memory_analysis()
  peak_bytes = stats.get("peak_bytes_in_use") or (
      memory.argument_size_in_bytes + memory.temp_size_in_bytes)
  best = min(times)
  rows = [dict(what=f"vdm train step ({config.name})", devices=placement.mesh.size,
               first_s=first, best_s=best, median_s=statistics.median(times),
               tflops=train_step_flops(forward) / best / 1e12,
               mfu=train_step_flops(forward) / best / peak, peak_mem_gib=peak_bytes / 2 ** 30)]
  write("train_scale" + ("_tiny" if args.tiny else ""), rows,
        dict(config=args.config, sets=args.set, mesh=str(placement),
             precision=cfg.precision, remat=d.remat, batch=cfg.batch_size,
             latents=list(latents), matmul_peak_tflops=peak / 1e12,
             peak_memory_source="device" if stats.get("peak_bytes_in_use") else "xla analysis",
             device=str(jax.devices()[0])))
