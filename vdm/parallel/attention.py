"""Sequence-parallel attention: full 3D attention over tokens split across the `sequence` axis.

With `parallel.sequence = s` and `dit.attention = full`, each device holds 1/s of a clip's tokens
(the 'tokens' rule of the full layout). Attention needs every key for every query, and there are
two ways to get them, chosen by `parallel.sequence_attention`:

  * 'gspmd': leave it to the compiler, which gathers the keys and values of the whole sequence on
    every device (each device then scores its queries against all L keys);
  * 'ulysses' (DeepSpeed-Ulysses, Jacobs et al. 2023): one all-to-all turns the token split into
    a head split, so each device runs ordinary attention over the whole sequence for H/s heads,
    and a second all-to-all turns it back. Communication per device is O(L D / s) and no device
    ever holds keys or values of all heads; it needs the heads (per tensor shard) to divide by s.

`dot_product_attention` is what a model calls; outside `vdm.parallel.activate` (one device) or
without a split sequence it is `jax.nn.dot_product_attention`, so model code stays unchanged.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax
from flax.core import spmd as flax_spmd
from jax.sharding import PartitionSpec

from vdm.parallel.rules import logical_to_spec

SEQUENCE_ATTENTION = ("gspmd", "ulysses")
_KIND = contextvars.ContextVar("vdm_sequence_attention", default="gspmd")

# Logical names of q, k, v as [B, T, N, H, Dh] (frames x tokens per frame) in a joint (full 3D)
# attention: the layout the DiT's activations already have, so nothing is moved to enter.
_QKV = ("batch", "frames", "tokens", "heads", None)


@contextlib.contextmanager
def sequence_attention(kind: str) -> Iterator[None]:
  """Within this context, sequence-split attention runs as `kind` ('gspmd' or 'ulysses')."""
  if kind not in SEQUENCE_ATTENTION:
    raise ValueError(f"parallel.sequence_attention={kind!r}: allowed {SEQUENCE_ATTENTION}")
  token = _KIND.set(kind)
  try:
    yield
  finally:
    _KIND.reset(token)


def _ulysses_spec(q: jax.Array) -> PartitionSpec | None:
  """The PartitionSpec of q [B, T, N, H, Dh] when the Ulysses path applies (an active mesh whose
  'sequence' axis splits the frames or the tokens, and local heads that divide over it), else
  None."""
  rules = flax_spmd.get_logical_axis_rules()
  mesh = jax.sharding.get_abstract_mesh()
  if _KIND.get() != "ulysses" or not rules or mesh.empty or mesh.shape.get("sequence", 1) == 1:
    return None
  spec = logical_to_spec(_QKV, rules, shape=q.shape, mesh=mesh)
  if "sequence" not in (spec[1], spec[2]):
    return None
  heads = q.shape[3]
  for axis in (spec[3],) if isinstance(spec[3], str) else spec[3] or ():
    heads //= mesh.shape[axis]
  if heads % mesh.shape["sequence"]:
    raise ValueError(f"parallel.sequence_attention='ulysses' splits the attention heads over "
                     f"parallel.sequence={mesh.shape['sequence']}, but each device has {heads} "
                     "heads; use a divisor of the heads, or 'gspmd'")
  return spec


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          mask: jax.Array | None = None, frames: int = 1,
                          plain=None) -> jax.Array:
  """Attention of q over k, v, each [B, L, H, Dh] with L = frames x tokens per frame (frame-major);
  mask broadcastable to [B, H, L, L] and the same for every batch row and head ([L, L] or None).
  Returns [B, L, H, Dh]; sequence-parallel when the context says so (module docstring), with the
  same values and gradients. plain(q, k, v, mask): the attention of an unsplit sequence (default
  `jax.nn.dot_product_attention`; the DiT passes its `dit.attention_kernel`)."""
  b, length, heads, dh = q.shape
  grid = lambda x: x.reshape(b, frames, length // frames, heads, dh)  # noqa: E731
  spec = _ulysses_spec(grid(q)) if length % frames == 0 else None
  if spec is None:
    if plain is not None:
      return plain(q, k, v, mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask)
  axis = 1 if spec[1] == "sequence" else 2  # the split one of frames and tokens
  if mask is not None:
    mask = mask.reshape(mask.shape[-2:])  # one [L, L] mask, replicated

  def local(q, k, v, mask):
    # [b, T, N, h, Dh] split along `axis` -> whole along it, a 1/s slice of the heads.
    def gather(x):
      x = jax.lax.all_to_all(x, "sequence", 3, axis, tiled=True)
      return x.reshape(x.shape[0], -1, *x.shape[3:])
    out = jax.nn.dot_product_attention(gather(q), gather(k), gather(v),
                                       mask=None if mask is None else mask[None, None])
    out = out.reshape(out.shape[0], frames, -1, *out.shape[2:])
    return jax.lax.all_to_all(out, "sequence", axis, 3, tiled=True)  # back to the split

  out = jax.shard_map(local, in_specs=(spec, spec, spec, PartitionSpec()), out_specs=spec,
                      check_vma=False)(grid(q), grid(k), grid(v), mask)
  return out.reshape(b, length, heads, dh)
