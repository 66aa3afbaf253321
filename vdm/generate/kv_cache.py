"""A fixed-size key/value cache of earlier frames for the DiT's temporal attention.

Only temporal attention crosses frames (spatial attention, cross-attention and the MLP act within
a frame), so autoregressive generation caches one key and value per layer, patch position and
frame. Slots form a ring buffer of `slots` frames with static shapes: a clip of any length runs
through one compiled step, attending to (at most) the last `slots` frames. A cached key keeps its
frame's position wherever its slot is: sincos positions are added to the tokens before attention,
and rope3d keys are cached already rotated to their frame.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class KVCache(NamedTuple):
  k: jax.Array      # [depth, B * N, slots, heads, head_dim]
  v: jax.Array      # [depth, B * N, slots, heads, head_dim]
  valid: jax.Array  # [slots] bool: which slots hold a frame


def empty_cache(*, depth: int, batch_tokens: int, slots: int, heads: int, head_dim: int,
                dtype=jnp.float32) -> KVCache:
  """An empty cache for `slots` frames; batch_tokens = batch x patches per frame."""
  shape = (depth, batch_tokens, slots, heads, head_dim)
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((slots,), bool))


def write_frames(cache: KVCache, k: jax.Array, v: jax.Array, first_frame) -> KVCache:
  """Stores keys/values [depth, B * N, F, heads, head_dim] of frames first_frame .. + F - 1.

  Frame f goes to slot f mod slots, overwriting the oldest frame once the buffer is full.
  """
  slots = cache.valid.shape[0]
  index = (first_frame + jnp.arange(k.shape[2])) % slots
  return KVCache(cache.k.at[:, :, index].set(k), cache.v.at[:, :, index].set(v),
                 cache.valid.at[index].set(True))


def clear(cache: KVCache) -> KVCache:
  """The cache with every slot marked empty (a hard cut: what follows sees nothing before)."""
  return cache._replace(valid=jnp.zeros_like(cache.valid))
