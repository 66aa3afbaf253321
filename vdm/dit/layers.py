"""Building blocks of the space-time DiT: embeddings, attention, patchify."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.dit import fast_ops
from vdm.nn import RMSNorm
from vdm.parallel.attention import dot_product_attention as sequence_parallel_attention
from vdm.parallel.sharding import logical_axes


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """adaLN: x [B, T, ..., D] scaled and shifted per frame by shift, scale [B, T, D] (the same
  for every token of a frame)."""
  expand = (slice(None), slice(None)) + (None,) * (x.ndim - 3) + (slice(None),)
  return x * (1.0 + scale[expand]) + shift[expand]


def speed_options(matmul_dtype: str, fast_grads: bool):
  """(layer norm function, dense kwargs) for the speed settings (see vdm.dit.fast_ops)."""
  if matmul_dtype not in fast_ops.DTYPES:
    raise ValueError(f"dit.matmul_dtype must be one of {tuple(fast_ops.DTYPES)}, "
                     f"got {matmul_dtype!r}")
  norm = fast_ops.layer_norm if fast_grads else fast_ops.plain_layer_norm
  return norm, dict(dot_general=fast_ops.dot_general(matmul_dtype, bool(fast_grads)))


def sincos_embedding(positions: jax.Array, dim: int, *, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal features of real positions [...] -> [..., dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def spacetime_position_embedding(frames: int, rows: int, cols: int, dim: int,
                                 frame_offset: int | jax.Array = 0) -> jax.Array:
  """Fixed 3D sincos embedding [frames, rows * cols, dim]: about a third of the width per axis.

  Computed from the grid size, so the model runs at any resolution, aspect and frame count.
  Frames are numbered from `frame_offset` (a chunk generated after `frame_offset` earlier frames).
  """
  d_time = d_row = (dim // 3) // 2 * 2
  d_col = dim - d_time - d_row
  t = sincos_embedding(frame_offset + jnp.arange(frames), d_time)
  r = sincos_embedding(jnp.arange(rows), d_row)
  c = sincos_embedding(jnp.arange(cols), d_col)
  grid = jnp.concatenate([jnp.broadcast_to(r[:, None, :], (rows, cols, d_row)),
                          jnp.broadcast_to(c[None, :, :], (rows, cols, d_col))], axis=-1)
  grid = grid.reshape(rows * cols, d_row + d_col)
  return jnp.concatenate([jnp.broadcast_to(t[:, None, :], (frames, rows * cols, d_time)),
                          jnp.broadcast_to(grid[None], (frames, rows * cols, d_row + d_col))],
                         axis=-1)


# 3D rotary position embedding (RoPE; Su et al. 2021) as video DiTs use it (Wan, CogVideoX): each
# head's dimensions are split into three parts that rotate with the frame, the row and the column.
# A query at p and a key at p' then score q . R(p' - p) k: attention sees only relative positions,
# so a chunk generated after `frame_offset` frames sees its context exactly as the first chunk did.

def rope3d_split(head_dim: int) -> tuple[int, int, int]:
  """Rotation pairs (frame, row, col) of a head of `head_dim` (even, >= 6) dimensions.

  Rows and columns get a third of the pairs each (rounded down), frames the rest, so time gets
  the largest share, as in Wan's split.
  """
  if head_dim % 2 or head_dim < 6:
    raise ValueError(f"dit.position='rope3d' needs an even head dimension >= 6 (dit.width / "
                     f"dit.heads), got {head_dim}")
  pairs = head_dim // 2
  return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def rope3d_angles(frames: int, rows: int, cols: int, head_dim: int,
                  frame_offset: int | jax.Array = 0, *, theta: float = 10_000.0) -> jax.Array:
  """Rotation angles [frames, rows * cols, head_dim // 2] of every token of a frames x rows x cols
  grid (frame-major, then row-major as `patchify` orders tokens); frames are numbered from
  `frame_offset`. Pair i of an axis with n pairs turns at frequency theta^(-i / n)."""
  def axis(positions, pairs):
    freqs = theta ** (-jnp.arange(pairs, dtype=jnp.float32) / pairs)
    return positions.astype(jnp.float32)[:, None] * freqs  # [len(positions), pairs]

  p_frame, p_row, p_col = rope3d_split(head_dim)
  t = axis(frame_offset + jnp.arange(frames), p_frame)
  r = axis(jnp.arange(rows), p_row)
  c = axis(jnp.arange(cols), p_col)
  grid = jnp.concatenate([
      jnp.broadcast_to(t[:, None, None, :], (frames, rows, cols, p_frame)),
      jnp.broadcast_to(r[None, :, None, :], (frames, rows, cols, p_row)),
      jnp.broadcast_to(c[None, None, :, :], (frames, rows, cols, p_col))], axis=-1)
  return grid.reshape(frames, rows * cols, p_frame + p_row + p_col)


def apply_rope(x: jax.Array, rope: tuple[jax.Array, jax.Array]) -> jax.Array:
  """Rotates x [B, L, H, Dh] by (cos, sin), each broadcastable to [B, L, Dh/2]: dimension i and
  i + Dh/2 form the pair i (the 'rotate half' layout)."""
  cos, sin = (a[..., None, :].astype(x.dtype) for a in rope)  # same angle for every head
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def temporal_groups(frames: int, temporal_patch: int) -> np.ndarray:
  """Which latent frame fills each slot of each token frame: [T', temporal_patch] int.

  Latent frame 0 is a token frame of its own (the causal VAE encodes it alone, as an image; alone
  it can also be pinned at level 0 for image-to-video), its slots all holding frame 0; then
  groups of `temporal_patch` consecutive frames. A last group that falls short is padded by
  repeating the clip's last frame; `unpatchify` crops what the padding produced. So
  T' = 1 + ceil((T - 1) / temporal_patch), and with temporal_patch = 1 every frame is its own
  token frame (T' = T).
  """
  groups = 1 + -(-(frames - 1) // temporal_patch)
  j = np.arange(groups)[:, None]
  source = 1 + (j - 1) * temporal_patch + np.arange(temporal_patch)[None, :]
  return np.where(j == 0, 0, np.minimum(source, frames - 1)).astype(np.int32)


def token_frame_of(frames: int, temporal_patch: int) -> np.ndarray:
  """The token frame each latent frame belongs to, [T] int (see `temporal_groups`)."""
  f = np.arange(frames)
  return np.where(f == 0, 0, 1 + (f - 1) // temporal_patch).astype(np.int32)


def patchify(z: jax.Array, patch: int, temporal_patch: int = 1) -> jax.Array:
  """[B, T, h, w, C] -> tokens [B, T', (h/p)(w/p), pt*p*p*C], pt = temporal_patch and the
  frames grouped into T' token frames as `temporal_groups` says."""
  if temporal_patch > 1:  # [B, T', pt, h, w, C]; with pt = 1 the grouping is the identity
    z = z[:, temporal_groups(z.shape[1], temporal_patch)]
  else:
    z = z[:, :, None]
  b, t, pt, h, w, c = z.shape
  z = z.reshape(b, t, pt, h // patch, patch, w // patch, patch, c)
  z = z.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return z.reshape(b, t, (h // patch) * (w // patch), pt * patch * patch * c)


def dense(in_features: int, out_features: int, axes: tuple[str | None, str | None], *,
          rngs: nnx.Rngs, **kwargs) -> nnx.Linear:
  """nnx.Linear whose kernel axes have logical names `axes` (the bias takes the output's name).

  The names are metadata only: parameters, init and call are those of a plain nnx.Linear.
  """
  return nnx.Linear(in_features, out_features, kernel_metadata=logical_axes(*axes),
                    bias_metadata=logical_axes(axes[1]), rngs=rngs, **kwargs)


def unpatchify(tokens: jax.Array, patch: int, h: int, w: int, temporal_patch: int = 1,
               frames: int | None = None) -> jax.Array:
  """Inverse of patchify: [B, T', N, pt*p*p*C] -> [B, T, h, w, C]. With temporal_patch > 1,
  `frames` (T) is needed: each latent frame is read from its own slot (frame 0 from the first
  slot of token frame 0) and the padding slots are dropped."""
  b, t, _, d = tokens.shape
  c = d // (temporal_patch * patch * patch)
  z = tokens.reshape(b, t, h // patch, w // patch, temporal_patch, patch, patch, c)
  z = z.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, t, temporal_patch, h, w, c)
  if temporal_patch == 1:
    return z[:, :, 0]
  f = np.arange(frames)
  return z[:, token_frame_of(frames, temporal_patch), np.where(f == 0, 0, (f - 1) % temporal_patch)]


QK_NORM_AXES = ("head", "width")
# How attention is computed: 'xla' (jax.nn.dot_product_attention's XLA path, any backend; it
# holds every head's full score matrix) or 'cudnn' (cuDNN's fused flash attention on a GPU, q, k
# and v in bf16: memory linear in the sequence; used where there is no mask).
ATTENTION_KERNELS = ("xla", "cudnn")


def attend(q, k, v, mask=None, kernel: str = "xla"):
  """Scaled dot-product attention of q [B, L, H, Dh] over k, v [B, S, H, Dh] (mask
  broadcastable to [B, H, L, S]) -> [B, L, H, Dh] in q's dtype, by `kernel`."""
  if kernel == "cudnn" and mask is None:
    bf16 = jnp.bfloat16
    return jax.nn.dot_product_attention(q.astype(bf16), k.astype(bf16), v.astype(bf16),
                                        implementation="cudnn").astype(q.dtype)
  return jax.nn.dot_product_attention(q, k, v, mask=mask)


class Attention(nnx.Module):
  """Multi-head attention; self-attention when `context` is None, else cross-attention.

  qk_norm: RMS-normalise queries and keys (learned scale) before the dot product, which
  bounds the attention logits and keeps large models' training stable; qk_norm_over 'head'
  normalises each head on its own, 'width' all heads together before the head split (Wan's).
  sequence_parallel: a self-attention over the tokens `parallel.sequence` splits (full 3D
  attention): it runs as `vdm.parallel.attention.dot_product_attention`, which picks the
  sequence-parallel algorithm of the run (the same values as plain attention).
  """

  def __init__(self, width: int, heads: int, *, context_width: int | None = None,
               qk_norm: bool = False, qk_norm_over: str = "head", kernel: str = "xla",
               sequence_parallel: bool = False, rngs: nnx.Rngs, **dense_kwargs):
    if qk_norm_over not in QK_NORM_AXES:
      raise ValueError(f"dit.qk_norm_over must be one of {QK_NORM_AXES}, got {qk_norm_over!r}")
    if kernel not in ATTENTION_KERNELS:
      raise ValueError(f"dit.attention_kernel must be one of {ATTENTION_KERNELS}, got {kernel!r}")
    self.heads, self.qk_norm_over, self.kernel = heads, qk_norm_over, kernel
    self.sequence_parallel = sequence_parallel
    self.q = dense(width, width, ("embed", "heads"), rngs=rngs, **dense_kwargs)
    self.kv = dense(context_width or width, 2 * width, ("embed", "heads"), rngs=rngs,
                    **dense_kwargs)
    self.out = dense(width, width, ("heads", "embed"), rngs=rngs, **dense_kwargs)
    if qk_norm:
      size = width if qk_norm_over == "width" else width // heads
      self.q_norm, self.k_norm = RMSNorm(size), RMSNorm(size)
    else:
      self.q_norm = self.k_norm = None

  def _heads(self, x: jax.Array, norm, rope=None) -> jax.Array:
    """[B, L, D] -> [B, L, H, D/H], normalised when qk_norm is on (over the whole width before
    the split, or per head after it), then rotated when `rope` (cos, sin [B, L, D/H/2]) is
    given."""
    if norm is not None and self.qk_norm_over == "width":
      x = norm(x)
    x = x.reshape(x.shape[0], x.shape[1], self.heads, x.shape[2] // self.heads)
    if norm is not None and self.qk_norm_over == "head":
      x = norm(x)
    return x if rope is None else apply_rope(x, rope)

  def __call__(self, x: jax.Array, context: jax.Array | None = None,
               mask: jax.Array | None = None, rope=None, frames: int = 1) -> jax.Array:
    """x [B, L, D]; context [B, S, Dc] (defaults to x); mask broadcastable to [B, H, L, S];
    rope: (cos, sin) broadcastable to [B, L, D/H/2] rotating queries and keys (self-attention
    only: queries and keys then share positions); frames: L = frames x tokens per frame (what a
    sequence-parallel attention splits)."""
    b, length, d = x.shape
    if rope is not None and context is not None:
      raise ValueError("rotary positions apply to self-attention only")
    context = x if context is None else context
    q = self._heads(self.q(x), self.q_norm, rope)
    k, v = jnp.split(self.kv(context), 2, axis=-1)
    k, v = self._heads(k, self.k_norm, rope), self._heads(v, None)
    if self.sequence_parallel:
      y = sequence_parallel_attention(
          q, k, v, mask=mask, frames=frames,
          plain=lambda q, k, v, mask: attend(q, k, v, mask, self.kernel))
    else:
      y = attend(q, k, v, mask, self.kernel)
    return self.out(y.reshape(b, length, d))

  def attend_with_past(self, x: jax.Array, past_k: jax.Array, past_v: jax.Array,
                       past_valid: jax.Array, rope=None,
                       mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Self-attention of x over cached keys/values plus its own (the KV-cache step).

    Args:
      x: [B, L, D] the new tokens; they attend each other fully and every valid cached slot.
      past_k, past_v: [B, S, H, D/H] cached keys and values (e.g. earlier frames, a ring buffer).
      past_valid: [S] bool, which cache slots hold data.
      rope: (cos, sin) [B, L, D/H/2] of x's positions, or None.
      mask: [L, S + L] bool or None: which cached slots and new tokens each new token may attend
        (and-ed with past_valid); None: all of them.
    Returns:
      (output [B, L, D], k, v) with k, v [B, L, H, D/H] of x, for the caller to cache.
    """
    b, length, d = x.shape
    q = self._heads(self.q(x), self.q_norm, rope)
    k, v = jnp.split(self.kv(x), 2, axis=-1)
    # Cached keys are normalised and rotated to their own positions, so they are never touched
    # again: with RoPE the score of a new query and a cached key depends on their distance only.
    k, v = self._heads(k, self.k_norm, rope), self._heads(v, None)
    visible = jnp.concatenate([past_valid, jnp.ones((length,), bool)])[None, None, None, :]
    if mask is not None:
      visible = visible & mask[None, None]
    # One dtype for the query and the keys and values it sees: the cache's slots may be wider
    # than a bf16 model's new keys (jax's attention wants them equal; this is their promotion).
    dtype = jnp.result_type(q, k, past_k)
    y = jax.nn.dot_product_attention(
        q.astype(dtype), jnp.concatenate([past_k, k], axis=1).astype(dtype),
        jnp.concatenate([past_v, v], axis=1).astype(dtype), mask=visible)
    return self.out(y.reshape(b, length, d).astype(q.dtype)), k, v


# Activations of an Mlp by name: GELU in its tanh form (jax's default; Wan's FFN and text MLP),
# SiLU (Wan's time MLP).
ACTIVATIONS = {"gelu_tanh": jax.nn.gelu, "silu": jax.nn.silu}


class Mlp(nnx.Module):
  """fc2(act(fc1(x))): [..., width] -> [..., out] (out defaults to width) through `hidden`.
  in_axis names the input's logical axis ('embed'; 'text_embed' for the text encoder's width,
  None for a sinusoid's)."""

  def __init__(self, width: int, hidden: int, *, out: int | None = None,
               act: str = "gelu_tanh", in_axis: str | None = "embed", rngs: nnx.Rngs,
               **dense_kwargs):
    self.act = act
    self.fc1 = dense(width, hidden, (in_axis, "mlp"), rngs=rngs, **dense_kwargs)
    self.fc2 = dense(hidden, out or width, ("mlp", "embed"), rngs=rngs, **dense_kwargs)

  def __call__(self, x):
    return self.fc2(ACTIVATIONS[self.act](self.fc1(x)))
