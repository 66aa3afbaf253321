"""Cost and memory against clip length, factorized vs full 3D attention.

  python -m benchmarks frames [--frames 8,16,32,64,128] [--repeats 3]

The DiT at the reference width (384, 6 heads, 4 layers, 16 x 16 latents with patch 2: 64 tokens
per frame, batch 1) for latent clips of 8 ... 128 frames: one forward pass (a sampling step
without guidance) and one train step (forward + backward + AdamW), with the peak memory XLA
plans for each compiled step (arguments + outputs + temporaries, from `memory_analysis`, so
it is the same number on any backend); a step whose planned peak exceeds half the machine's memory
is compiled and reported but not run. Factorized attention grows linearly in frames plus a
small quadratic temporal term; full 3D attention is quadratic in all tokens.
"""
from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import timed, write
from benchmarks.train_step import make_step
from vdm.dit.model import DiT


def _peak_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def _physical_memory() -> int:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks frames")
  parser.add_argument("--frames", default="8,16,32,64,128")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--tiny", action="store_true", help="toy width (smoke test)")
  parser.add_argument("--layouts", default="factorized,full")
  parser.add_argument("--memory-fraction", type=float, default=0.5,
                      help="time a step only if its planned peak is below this share of RAM")
  args = parser.parse_args(argv)
  width, heads, depth, size = (32, 2, 1, 4) if args.tiny else (384, 6, 4, 16)
  rows = []
  for attention in args.layouts.split(","):
    for frames in (int(f) for f in args.frames.split(",")):
      model = DiT(latent_channels=4, text_width=width, width=width, depth=depth, heads=heads,
                  patch=2, attention=attention, rngs=nnx.Rngs(0))
      z = jnp.ones((1, frames, size, size, 4))
      levels = jnp.full((1, frames), 0.5)
      text, mask = jnp.ones((1, 16, width)), jnp.ones((1, 16), bool)
      graphdef, state = nnx.split(model)
      forward = jax.jit(lambda s, z, t: nnx.merge(graphdef, s)(z, t, text, mask))
      forward_compiled = forward.lower(state, z, levels).compile()
      tx = optax.adamw(1e-4)
      step, params = make_step(model, tx)
      opt_state = tx.init(params)
      batch = (z, text, mask)
      step_compiled = step.lower(params, opt_state, batch, jax.random.key(0)).compile()
      row = dict(attention=attention, frames=frames, tokens=frames * (size // 2) ** 2,
                 forward_ms=float("nan"), forward_median_ms=float("nan"),
                 train_step_ms=float("nan"),
                 forward_peak_mb=_peak_bytes(forward_compiled) / 2**20,
                 train_peak_mb=_peak_bytes(step_compiled) / 2**20)
      # Time only what fits: the planned peak is known before running (a full-attention train
      # step at 128 frames plans more than this machine's memory).
      if row["train_peak_mb"] * 2**20 < args.memory_fraction * _physical_memory():
        _, times = timed(lambda: forward_compiled(state, z, levels).block_until_ready(),
                         args.repeats)
        _, step_times = timed(lambda: step_compiled(params, opt_state, batch,
                                                    jax.random.key(0))[2].block_until_ready(),
                              args.repeats)
        row.update(forward_ms=1000 * min(times),
                   forward_median_ms=1000 * statistics.median(times),
                   train_step_ms=1000 * min(step_times))
      rows.append(row)
  write("frames" + ("_tiny" if args.tiny else ""), rows,
        dict(width=width, heads=heads, depth=depth, latent_size=size, repeats=args.repeats,
             backend=jax.default_backend()))
