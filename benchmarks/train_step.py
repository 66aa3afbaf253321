"""Train-step throughput of the DiT at the shared reference shape, as a fraction of the matmul
peak measured in the same run.

Reference shape (issue #9): batch 2, latent 8 frames x 16 x 16 x 4, patch 2, width 384,
6 heads x 64, 4 layers, 16 text tokens; forward + backward + AdamW.

  python -m benchmarks train_step [--repeats N] [--attention factorized] [--tiny]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.common import timed, write
from benchmarks.flops import dit_forward_flops, train_step_flops
from vdm.diffusion import flow_matching_loss, interpolate
from vdm.dit.model import DiT


def matmul_peak(size: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """Best FLOP/s of one size^3 jnp.dot on this machine, measured now."""
  a = jnp.ones((size, size), dtype)
  dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  dot(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    dot(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * size ** 3 / best


def make_step(model, tx):
  graphdef, params = nnx.split(model, nnx.Param)

  @jax.jit
  def step(params, opt_state, batch, rng):
    r_t, r_n = jax.random.split(rng)
    x0, text, mask = batch
    levels = jax.random.uniform(r_t, x0.shape[:2])
    noise = jax.random.normal(r_n, x0.shape)

    def loss_fn(p):
      v = nnx.merge(graphdef, p)(interpolate(x0, noise, levels), levels, text, mask)
      return flow_matching_loss(v, x0, noise)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, params


VARIANTS = (  # (row name, dit.attention, dit.matmul_dtype, dit.fast_grads)
    ("factorized, fp32, autodiff gradients", "factorized", "float32", False),
    ("factorized, fp32, fast gradients (default)", "factorized", "float32", True),
    ("factorized, bf16 matmuls, fast gradients", "factorized", "bfloat16", True),
    ("full 3D, fp32, fast gradients", "full", "float32", True),
    ("full 3D, bf16 matmuls, fast gradients", "full", "bfloat16", True),
)


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks train_step")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--curve-steps", type=int, default=30,
                      help="steps of the loss-curve comparison (random data, same init)")
  parser.add_argument("--tiny", action="store_true", help="toy shape (smoke test)")
  args = parser.parse_args(argv)
  shape = dict(batch=2, frames=8, size=16, channels=4, patch=2, width=384, heads=6, depth=4,
               text=16)
  if args.tiny:
    shape.update(frames=2, size=4, width=32, heads=2, depth=1, text=4)
  peak = matmul_peak(512 if args.tiny else 2048)
  peak_bf16 = matmul_peak(512 if args.tiny else 2048, dtype=jnp.bfloat16)
  s = shape
  timing_batch = (jnp.ones((s["batch"], s["frames"], s["size"], s["size"], s["channels"])),
                  jnp.ones((s["batch"], s["text"], s["width"])),
                  jnp.ones((s["batch"], s["text"]), bool))
  r = jax.random.split(jax.random.key(42), 2)
  curve_batch = (jax.random.normal(r[0], timing_batch[0].shape),
                 jax.random.normal(r[1], timing_batch[1].shape), timing_batch[2])
  rows, curves = [], {}
  for name, attention, matmul_dtype, fast_grads in VARIANTS:
    flops = train_step_flops(dit_forward_flops(
        batch=s["batch"], frames=s["frames"], tokens_per_frame=(s["size"] // s["patch"]) ** 2,
        text_tokens=s["text"], width=s["width"], depth=s["depth"], mlp_ratio=4.0,
        patch_dim=s["patch"] ** 2 * s["channels"], attention=attention))

    def fresh():
      model = DiT(latent_channels=s["channels"], text_width=s["width"], width=s["width"],
                  depth=s["depth"], heads=s["heads"], patch=s["patch"], attention=attention,
                  matmul_dtype=matmul_dtype, fast_grads=fast_grads, rngs=nnx.Rngs(0))
      tx = optax.adamw(1e-3)
      step, params = make_step(model, tx)
      return step, dict(params=params, opt_state=tx.init(params))

    step, state = fresh()

    def one_step():
      state["params"], state["opt_state"], loss = step(state["params"], state["opt_state"],
                                                       timing_batch, jax.random.key(0))
      loss.block_until_ready()

    compile_and_first, times = timed(one_step, args.repeats)
    # The loss curve from the same init and data for every variant; the step already compiled.
    _, state = fresh()
    curve = []
    for i in range(args.curve_steps):
      state["params"], state["opt_state"], loss = step(state["params"], state["opt_state"],
                                                       curve_batch, jax.random.key(i))
      curve.append(float(loss))
    curves[name] = curve
    best, median = min(times), statistics.median(times)
    rows.append(dict(model=name, step_min_ms=1000 * best, step_median_ms=1000 * median,
                     compile_s=compile_and_first, gflop_per_step=flops / 1e9,
                     gflops_achieved=flops / best / 1e9, peak_gflops=peak / 1e9,
                     fraction_of_peak=flops / best / peak,
                     vs_peer_148=flops / best / 1e9 / 148.0,
                     final_loss=curve[-1] if curve else float("nan")))
  for row, (_, attention, _, _) in zip(rows, VARIANTS):
    # Loss curves against the same layout's fp32 autodiff-free reference (first row per layout).
    reference = np.asarray(curves[next(v[0] for v in VARIANTS if v[1] == attention)])
    if len(reference):
      row["max_loss_rel_diff"] = float(np.max(np.abs(np.asarray(curves[row["model"]])
                                                      - reference) / np.abs(reference)))
  write("train_step" + ("_tiny" if args.tiny else ""), rows,
        dict(shape=shape, repeats=args.repeats, peer_gflops_pytorch=148.0,
             peak_bf16_gflops=peak_bf16 / 1e9, loss_curves=curves,
             glibc_tunables=os.environ.get("GLIBC_TUNABLES", "")))
