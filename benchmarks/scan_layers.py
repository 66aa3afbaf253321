"""Unrolled vs scanned DiT layers (dit.scan_layers): compile time and train-step time by depth.

A scanned stack traces and compiles one block whatever the depth, so compile time stays about
flat; each step runs the same arithmetic through a loop, which XLA:CPU runs somewhat slower
(TOOLCHAIN.md). Small width, so the depth dominates compile time.

  python -m benchmarks scan_layers [--depths 4,24] [--repeats N] [--tiny]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import timed, write
from benchmarks.train_step import make_step
from vdm.dit.model import DiT


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks scan_layers")
  parser.add_argument("--depths", default="4,24")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--tiny", action="store_true", help="toy shape (smoke test)")
  args = parser.parse_args(argv)
  s = dict(batch=2, frames=8, size=16, channels=4, patch=2, width=64, heads=4, text=16)
  if args.tiny:
    s.update(frames=2, size=4, width=32, heads=2, text=4)
  batch = (jnp.ones((s["batch"], s["frames"], s["size"], s["size"], s["channels"])),
           jnp.ones((s["batch"], s["text"], s["width"])), jnp.ones((s["batch"], s["text"]), bool))
  rows = []
  for depth in (int(d) for d in args.depths.split(",")):
    for scan in (False, True):
      model = DiT(latent_channels=s["channels"], text_width=s["width"], width=s["width"],
                  depth=depth, heads=s["heads"], patch=s["patch"], scan_layers=scan,
                  rngs=nnx.Rngs(0))
      tx = optax.adamw(1e-3)
      step, params = make_step(model, tx)
      state = dict(params=params, opt_state=tx.init(params))
      t0 = time.perf_counter()  # trace + lower + compile, without running
      compiled = step.lower(state["params"], state["opt_state"], batch,
                            jax.random.key(0)).compile()
      compile_s = time.perf_counter() - t0

      def one_step():
        state["params"], state["opt_state"], loss = compiled(state["params"], state["opt_state"],
                                                             batch, jax.random.key(0))
        loss.block_until_ready()

      _, times = timed(one_step, args.repeats)
      rows.append(dict(depth=depth, layers="scanned" if scan else "unrolled",
                       compile_s=compile_s, step_min_ms=1000 * min(times),
                       step_median_ms=1000 * statistics.median(times)))
  write("scan_layers" + ("_tiny" if args.tiny else ""), rows, dict(shape=s, repeats=args.repeats))
