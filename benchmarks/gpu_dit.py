"""A Wan-1.3B-shaped DiT on one accelerator: train-step and sampling-step time, MFU, peak memory.

Shape (issue #9): 30 layers, width 1536, 12 heads, MLP 8960; a 480p x 81-frame clip is
21 latent frames x 60 x 104 x 16 channels, patch 2 -> 32,760 tokens; 512 text tokens of width 4096.
bf16 matmuls with fp32 master weights; attention through jax.nn.dot_product_attention (cuDNN on
GPU). Note: vdm's DiT is factorized (spatial then temporal attention), Wan's is full 3D.

  python -m benchmarks gpu_dit [--remat none|full|dots] [--repeats N] [--tiny]
"""
from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import timed, write
from benchmarks.flops import dit_forward_flops, train_step_flops
from benchmarks.train_step import matmul_peak
from vdm.diffusion import flow_matching_loss, interpolate
from vdm.dit.model import DiT

WAN_1_3B = dict(depth=30, width=1536, heads=12, mlp=8960, frames=21, height=60, width_px=104,
                channels=16, patch=2, text=512, text_width=4096)
TINY = dict(depth=2, width=64, heads=4, mlp=160, frames=3, height=8, width_px=8, channels=4,
            patch=2, text=8, text_width=32)


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks gpu_dit")
  parser.add_argument("--remat", default="dots", choices=("none", "full", "dots"))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--tiny", action="store_true", help="toy shape (CPU smoke test)")
  args = parser.parse_args(argv)
  s = TINY if args.tiny else WAN_1_3B
  model = DiT(latent_channels=s["channels"], text_width=s["text_width"], width=s["width"],
              depth=s["depth"], heads=s["heads"], patch=s["patch"],
              mlp_ratio=s["mlp"] / s["width"], remat=args.remat, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.adamw(1e-4)
  opt_state = tx.init(params)
  bf16 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.bfloat16), tree)
  x0 = jnp.ones((1, s["frames"], s["height"], s["width_px"], s["channels"]), jnp.bfloat16)
  text = jnp.ones((1, s["text"], s["text_width"]), jnp.bfloat16)
  mask = jnp.ones((1, s["text"]), bool)

  @jax.jit
  def train_step(params, opt_state, rng):
    levels = jax.random.uniform(rng, x0.shape[:2])
    noise = jax.random.normal(rng, x0.shape, jnp.bfloat16)

    def loss_fn(p):  # fp32 master weights, bf16 compute
      x_t = interpolate(x0, noise, levels).astype(jnp.bfloat16)
      v = nnx.merge(graphdef, bf16(p))(x_t, levels, text, mask)
      return flow_matching_loss(v.astype(jnp.float32), x0.astype(jnp.float32),
                                noise.astype(jnp.float32))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def sample_step(params):  # one guided sampler step: prompt + negative prompt as a batch of 2
    two = lambda a: jnp.concatenate([a, a])
    return nnx.merge(graphdef, bf16(params))(two(x0), jnp.full((2, s["frames"]), 0.5),
                                             two(text), two(mask))

  state = dict(params=params, opt_state=opt_state)

  def one_train_step():
    state["params"], state["opt_state"], loss = train_step(state["params"], state["opt_state"],
                                                           jax.random.key(0))
    loss.block_until_ready()

  train_first, train_times = timed(one_train_step, args.repeats)
  sample_first, sample_times = timed(lambda: sample_step(state["params"]).block_until_ready(),
                                     args.repeats)
  peak = matmul_peak(512 if args.tiny else 8192, dtype=jnp.bfloat16)
  tokens = (s["height"] // s["patch"]) * (s["width_px"] // s["patch"])
  forward = dit_forward_flops(batch=1, frames=s["frames"], tokens_per_frame=tokens,
                              text_tokens=s["text"], width=s["width"], depth=s["depth"],
                              mlp_ratio=s["mlp"] / s["width"],
                              patch_dim=s["patch"] ** 2 * s["channels"])
  stats = jax.devices()[0].memory_stats() or {}
  peak_gib = stats.get("peak_bytes_in_use", 0) / 2 ** 30
  train_best, sample_best = min(train_times), min(sample_times)
  rows = [dict(what=f"train step (remat={args.remat})", first_s=train_first,
               best_s=train_best, median_s=statistics.median(train_times),
               tflops=train_step_flops(forward) / train_best / 1e12,
               mfu=train_step_flops(forward) / train_best / peak, peak_mem_gib=peak_gib),
          dict(what="sampling step (CFG, batch 2)", first_s=sample_first, best_s=sample_best,
               median_s=statistics.median(sample_times),
               tflops=2 * forward / sample_best / 1e12, mfu=2 * forward / sample_best / peak,
               peak_mem_gib=peak_gib)]
  write("gpu_dit" + ("_tiny" if args.tiny else ""), rows,
        dict(shape=s, tokens=s["frames"] * tokens, bf16_matmul_peak_tflops=peak / 1e12,
             remat=args.remat, device=str(jax.devices()[0])))
