"""A small T5-style text encoder (Flax NNX).

T5 v1.1 ingredients at toy scale: RMSNorm pre-normalisation, bucketed relative position bias shared
by all layers, gated-GELU feed-forward, no biases. Trained jointly with the denoiser, optionally
after span-corruption pretraining (`vdm.text.pretrain`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.nn import RMSNorm
from vdm.parallel.sharding import constrain, logical_axes


def relative_position_buckets(relative_position: jax.Array, *, bidirectional: bool = True,
                              num_buckets: int = 32, max_distance: int = 128) -> jax.Array:
  """T5's bucketing of key_pos - query_pos: exact for small offsets, log-spaced after.

  Bidirectional (the encoder): half the buckets for keys before the query, half for keys after.
  Unidirectional (the causal decoder): every bucket for keys at or before the query, since a
  later key is masked anyway.
  """
  if bidirectional:
    num_buckets //= 2
    bucket = (relative_position > 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(relative_position)
  else:
    bucket = jnp.zeros_like(relative_position, jnp.int32)
    n = jnp.maximum(-relative_position, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  large = max_exact + (
      jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
      / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, n, large)


def position_bias(rel_bias: nnx.Embed, query_length: int, key_length: int, *,
                  bidirectional: bool, max_distance: int) -> jax.Array:
  """The learned relative position bias [1, heads, Lq, Lk] (rel_bias: buckets -> heads)."""
  rel = jnp.arange(key_length)[None, :] - jnp.arange(query_length)[:, None]
  buckets = relative_position_buckets(rel, bidirectional=bidirectional,
                                      num_buckets=rel_bias.num_embeddings,
                                      max_distance=max_distance)
  return jnp.transpose(rel_bias(buckets), (2, 0, 1))[None]


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array,
                         heads: int) -> jax.Array:
  """q [B, Lq, D], k and v [B, Lk, D], bias [B or 1, heads, Lq, Lk] -> [B, Lq, D]."""
  split = lambda a: a.reshape(a.shape[0], a.shape[1], heads, a.shape[2] // heads)  # noqa: E731
  # T5 has no 1/sqrt(d) scaling: it is folded into the initialisation; keep the scaled form,
  # which trains stably from a standard init.
  y = jax.nn.dot_product_attention(split(q), split(k), split(v), bias=bias)
  return y.reshape(q.shape)


def gated_gelu(wi: nnx.Linear, wo: nnx.Linear, x: jax.Array) -> jax.Array:
  """T5 v1.1's feed-forward: wo(gelu(gate) * up), with [gate, up] = wi(x) in one matmul."""
  gate, up = jnp.split(wi(x), 2, axis=-1)
  return wo(jax.nn.gelu(gate) * up)


POSITION_BIASES = ("shared", "per_layer")


def _rel_bias(num_buckets: int, heads: int, rngs: nnx.Rngs) -> nnx.Embed:
  return nnx.Embed(num_buckets, heads, rngs=rngs,
                   embedding_metadata=logical_axes("buckets", "head_count"))


class T5Layer(nnx.Module):
  """One encoder layer; with `rel_bias` (UMT5) it holds its own relative-position table."""

  def __init__(self, width: int, heads: int, mlp: int, *, rngs: nnx.Rngs,
               num_buckets: int = 0):
    self.heads = heads
    self.rel_bias = _rel_bias(num_buckets, heads, rngs) if num_buckets else None
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
    q, k, v = jnp.split(self.qkv(self.attn_norm(x)), 3, axis=-1)
    x = x + self.out(multi_head_attention(q, k, v, bias, self.heads))
    return x + gated_gelu(self.wi, self.wo, self.mlp_norm(x))


class T5Encoder(nnx.Module):
  """ids [B, L] int32, mask [B, L] bool -> embeddings [B, L, width].

  position_bias: 'shared' (T5: one relative-position table for all layers) or 'per_layer'
  (UMT5, Wan's text encoder: each layer its own table)."""

  def __init__(self, *, vocab_size: int, width: int, depth: int, heads: int, mlp: int,
               num_buckets: int = 32, max_distance: int = 128, position_bias: str = "shared",
               rngs: nnx.Rngs):
    if position_bias not in POSITION_BIASES:
      raise ValueError(f"text.position_bias must be one of {POSITION_BIASES}, "
                       f"got {position_bias!r}")
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs,
                           embedding_metadata=logical_axes("vocab", "embed"))
    per_layer = position_bias == "per_layer"
    self.rel_bias = None if per_layer else _rel_bias(num_buckets, heads, rngs)
    self.layers = nnx.List([T5Layer(width, heads, mlp, rngs=rngs,
                                    num_buckets=num_buckets if per_layer else 0)
                            for _ in range(depth)])
    self.final_norm = RMSNorm(width)
    self.num_buckets, self.max_distance = num_buckets, max_distance

  @classmethod
  def from_config(cls, cfg, *, vocab_size: int, rngs: nnx.Rngs) -> "T5Encoder":
    """vocab_size: the tokenizer's; text.vocab_rows, when set, overrides it."""
    return cls(vocab_size=cfg.vocab_rows or vocab_size, width=cfg.width, depth=cfg.depth,
               heads=cfg.heads, mlp=cfg.mlp, position_bias=cfg.position_bias, rngs=rngs)

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    length = ids.shape[1]
    bias_of = lambda table: position_bias(table, length, length, bidirectional=True,  # noqa: E731
                                          max_distance=self.max_distance)
    padding = jnp.where(mask[:, None, None, :], 0.0, -1e9)
    shared = None if self.rel_bias is None else bias_of(self.rel_bias) + padding
    tokens = ("batch", "text_tokens", "act_embed")
    x = constrain(self.embed(ids), tokens)
    for layer in self.layers:
      bias = shared if layer.rel_bias is None else bias_of(layer.rel_bias) + padding
      x = constrain(layer(x, bias), tokens)
    return self.final_norm(x)
