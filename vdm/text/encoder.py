"""A small T5-style text encoder (Flax NNX).

T5 v1.1 ingredients at toy scale: RMSNorm pre-normalisation, bucketed relative position bias shared
by all layers, gated-GELU feed-forward, no biases. Trained jointly with the denoiser.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.parallel.sharding import constrain, logical_axes


def relative_position_buckets(relative_position: jax.Array, *, num_buckets: int = 32,
                              max_distance: int = 128) -> jax.Array:
  """T5's bidirectional bucketing of key_pos - query_pos: exact for small offsets, log-spaced after."""
  half = num_buckets // 2
  bucket = (relative_position > 0).astype(jnp.int32) * half
  n = jnp.abs(relative_position)
  max_exact = half // 2
  is_small = n < max_exact
  large = max_exact + (
      jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
      / math.log(max_distance / max_exact) * (half - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, half - 1)
  return bucket + jnp.where(is_small, n, large)


class RMSNorm(nnx.Module):
  def __init__(self, dim: int, *, eps: float = 1e-6):
    self.scale = nnx.Param(jnp.ones((dim,)), **logical_axes("norm"))
    self.eps = eps

  def __call__(self, x):
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(var + self.eps) * self.scale[...]


class T5Layer(nnx.Module):
  def __init__(self, width: int, heads: int, mlp: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.attn_norm = RMSNorm(width)
    linear = lambda din, dout, axes: nnx.Linear(din, dout, use_bias=False, rngs=rngs,
                                                kernel_metadata=logical_axes(*axes))
    self.qkv = linear(width, 3 * width, ("embed", "heads"))
    self.out = linear(width, width, ("heads", "embed"))
    self.mlp_norm = RMSNorm(width)
    self.wi = linear(width, 2 * mlp, ("embed", "mlp"))
    self.wo = linear(mlp, width, ("mlp", "embed"))

  def __call__(self, x, bias):
    """x [B, L, D]; bias [B or 1, heads, L, L] (relative positions + padding mask)."""
    b, length, d = x.shape
    q, k, v = jnp.split(self.qkv(self.attn_norm(x)), 3, axis=-1)
    split = lambda a: a.reshape(b, length, self.heads, d // self.heads)
    # T5 has no 1/sqrt(d) scaling: it is folded into the initialisation; keep the scaled form,
    # which trains stably from a standard init.
    y = jax.nn.dot_product_attention(split(q), split(k), split(v), bias=bias)
    x = x + self.out(y.reshape(b, length, d))
    gate, up = jnp.split(self.wi(self.mlp_norm(x)), 2, axis=-1)
    return x + self.wo(jax.nn.gelu(gate) * up)


class T5Encoder(nnx.Module):
  """ids [B, L] int32, mask [B, L] bool -> embeddings [B, L, width]."""

  def __init__(self, *, vocab_size: int, width: int, depth: int, heads: int, mlp: int,
               num_buckets: int = 32, max_distance: int = 128, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs,
                           embedding_metadata=logical_axes("vocab", "embed"))
    self.rel_bias = nnx.Embed(num_buckets, heads, rngs=rngs,
                              embedding_metadata=logical_axes("buckets", "head_count"))
    self.layers = nnx.List([T5Layer(width, heads, mlp, rngs=rngs) for _ in range(depth)])
    self.final_norm = RMSNorm(width)
    self.num_buckets, self.max_distance = num_buckets, max_distance

  @classmethod
  def from_config(cls, cfg, *, vocab_size: int, rngs: nnx.Rngs) -> "T5Encoder":
    return cls(vocab_size=vocab_size, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
               mlp=cfg.mlp, rngs=rngs)

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    length = ids.shape[1]
    pos = jnp.arange(length)
    buckets = relative_position_buckets(pos[None, :] - pos[:, None], num_buckets=self.num_buckets,
                                        max_distance=self.max_distance)
    bias = jnp.transpose(self.rel_bias(buckets), (2, 0, 1))[None]  # [1, H, L, L]
    bias = bias + jnp.where(mask[:, None, None, :], 0.0, -1e9)
    tokens = ("batch", "text_tokens", "act_embed")
    x = constrain(self.embed(ids), tokens)
    for layer in self.layers:
      x = constrain(layer(x, bias), tokens)
    return self.final_norm(x)
