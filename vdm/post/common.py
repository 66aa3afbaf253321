"""Shared pieces of the post-processing stages: dtype handling, argument checks, chunking.

Every stage takes frames [T, H, W, 3], either uint8 or float in [0, 1], and returns the same
dtype it was given, so stages compose in any order. Inside, work is float32 in [0, 1].
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_CHUNK = 16
# Rec. 709 luma weights: the same ones the grading and the motion estimation use.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def check_frames(frames, stage: str) -> np.ndarray:
  """Returns frames as a numpy array after checking the shape [T, H, W, 3]."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
    raise ValueError(f"{stage}: frames must be [T, H, W, 3] with T >= 1, got shape {frames.shape}")
  if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
    raise ValueError(f"{stage}: frames must be uint8 or float in [0, 1], got {frames.dtype}")
  return frames


def to_float(frames: np.ndarray) -> np.ndarray:
  """uint8 [..] -> float32 in [0, 1]; float input is cast to float32 unchanged."""
  if frames.dtype == np.uint8:
    return frames.astype(np.float32) / 255.0
  return frames.astype(np.float32, copy=False)


def like(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """Casts float32 [0, 1] output back to the dtype the caller passed in."""
  if reference.dtype == np.uint8:
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
  return out.astype(reference.dtype, copy=False)


def check_number(stage: str, field: str, value, lo: float, hi: float, *,
                 integer: bool = False) -> float:
  """Checks lo <= value <= hi (and integer-ness); the error names stage, field, value, range."""
  kind = "an integer" if integer else "a number"
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{stage}: {field} must be {kind} in [{lo}, {hi}], got {value!r}")
  if integer and float(value) != int(value):
    raise ValueError(f"{stage}: {field} must be {kind} in [{lo}, {hi}], got {value!r}")
  if not (lo <= value <= hi):  # also rejects NaN
    raise ValueError(f"{stage}: {field} must be {kind} in [{lo}, {hi}], got {value!r}")
  return int(value) if integer else float(value)


def check_choice(stage: str, field: str, value, choices) -> str:
  if value not in choices:
    raise ValueError(f"{stage}: {field} must be one of {tuple(choices)}, got {value!r}")
  return value


def check_chunk(chunk, stage: str = "chunk") -> int:
  """Frames per chunk, 1..4096; `stage` names where it came from in the error (a CLI flag)."""
  return check_number(stage, "chunk", chunk, 1, 4096, integer=True)


def map_chunks(fn: Callable[..., jax.Array], frames: np.ndarray, chunk: int,
               halo: int = 0, per_frame: np.ndarray | None = None) -> np.ndarray:
  """Applies a jitted float fn to frames [T, ...] chunk by chunk; returns numpy [T, ...].

  frames may be uint8 or float: each chunk is converted to float32 [0, 1] on the way in and back
  to the input dtype on the way out, so a long uint8 clip never exists as float all at once.
  The last chunk is padded (by repeating edge frames) to the full chunk size so the jitted
  function compiles once per clip shape, not once per remainder. `halo` extra frames on each
  side are handed to fn (clamped at the clip ends) for temporal filters; fn gets
  [chunk + 2 * halo, ...] and must return the [chunk, ...] centre. `per_frame` [T, ...], if
  given, is sliced the same way and passed to fn as its second argument.
  """
  t = frames.shape[0]
  chunk = min(chunk, t)
  outs = []
  for start in range(0, t, chunk):
    idx = np.clip(np.arange(start - halo, start + chunk + halo), 0, t - 1)
    args = (jnp.asarray(to_float(frames[idx])),)
    if per_frame is not None:
      args += (jnp.asarray(per_frame[idx]),)
    out = np.asarray(fn(*args))
    outs.append(like(out[:min(chunk, t - start)], frames))
  return np.concatenate(outs, axis=0)


def gaussian_kernel(sigma: float, radius: int | None = None) -> np.ndarray:
  """Normalised 1-D Gaussian, float32 [2 * radius + 1]; radius defaults to ceil(3 sigma)."""
  if radius is None:
    radius = max(1, int(np.ceil(3.0 * sigma)))
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
  return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur over axes 1, 2 (H, W) of x [N, H, W, C], edge-replicated borders."""
  k = gaussian_kernel(sigma)
  r = len(k) // 2
  p = jnp.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)), mode="edge")
  h = x.shape[1]
  x = sum(float(w) * p[:, i:i + h] for i, w in enumerate(k))
  p = jnp.pad(x, ((0, 0), (0, 0), (r, r), (0, 0)), mode="edge")
  w_ = x.shape[2]
  return sum(float(w) * p[:, :, i:i + w_] for i, w in enumerate(k))


def smooth_1d(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian smoothing along axis 0 of x [T, ...]; returns float64 [T, ...].

  Past each end the signal is continued by a straight line fitted to the ~2 sigma samples
  there. A linear trend (a steady pan, a slow fade) is therefore kept exactly, and the end
  samples are smoothed like the rest instead of being pinned to their own (shaky) values, as
  mirror or point-reflection padding would do.
  """
  x = np.asarray(x, np.float64)
  t = x.shape[0]
  if t < 2 or sigma <= 0:
    return x.copy()
  k = gaussian_kernel(sigma).astype(np.float64)
  r = len(k) // 2
  n = min(t, max(2, int(round(2 * sigma))))

  def extend(samples, at):  # samples [n, ...] at positions 0..n-1; line evaluated at `at`
    pos = np.arange(n, dtype=np.float64)
    flat = samples.reshape(n, -1)
    slope, icpt = np.polyfit(pos, flat, 1)
    return (slope[None] * at[:, None] + icpt[None]).reshape((len(at),) + x.shape[1:])

  head = extend(x[:n], np.arange(-r, 0, dtype=np.float64))
  tail = extend(x[t - n:], np.arange(n, n + r, dtype=np.float64))
  padded = np.concatenate([head, x, tail], axis=0)
  out = np.zeros_like(x)
  for i, w in enumerate(k):
    out += w * padded[i:i + t]
  return out
