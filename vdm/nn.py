"""Pieces shared by several models: RMSNorm, and the one conversion between pixels and the
[-1, 1] range the VAE reads and writes.

The conversion is written once so that training, generation and evaluation cannot drift apart:
a clip encoded for training and the frames a sampler decodes are the same function's inverse.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.parallel.sharding import logical_axes


class RMSNorm(nnx.Module):
  """x / rms(x) * scale over the last axis (T5's norm; the DiT's per-head q/k norm).

  The parameter is `scale` [dim] on the 'norm' logical axis: checkpoints name it by that path.
  """

  def __init__(self, dim: int, *, eps: float = 1e-6):
    self.scale = nnx.Param(jnp.ones((dim,)), **logical_axes("norm"))
    self.eps = eps

  def __call__(self, x):
    # Statistics in fp32 whatever x's dtype (a no-op for fp32 inputs).
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    return (x32 * jax.lax.rsqrt(var + self.eps)).astype(x.dtype) * self.scale[...]


def normalize_pixels(pixels) -> jax.Array:
  """Pixels [...] in [0, 255] (uint8 or float) -> float32 [...] in [-1, 1] (not clipped)."""
  return jnp.asarray(pixels, jnp.float32) / 127.5 - 1.0


def denormalize_pixels(x: jax.Array) -> jax.Array:
  """Values [...] in [-1, 1] -> uint8 pixels [...]: clipped to [-1, 1], then rounded to the
  nearest of the 256 levels (half to even)."""
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)
