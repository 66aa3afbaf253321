"""Deflicker: per-frame colour gain matching plus an edge-aware temporal low-pass.

1. Flicker is a per-frame change of brightness / colour that the scene does not explain. Each
   frame's per-channel mean is compared with a temporally smoothed reference (Gaussian over
   frames, ends extended so slow fades are kept) and the frame is scaled by reference / mean.
2. Remaining high-frequency temporal noise is removed by a temporal bilateral filter: each pixel
   is averaged with the same pixel in the neighbouring frames, weighted by how similar they are.
   A moving edge makes a pixel change by far more than the noise level, so those neighbours get
   ~zero weight and motion is kept exactly where it is, without needing a motion estimate.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common

MAX_GAIN = 4.0  # a frame more than 2 stops off is a cut or a fade, not flicker
_EPS = 1e-3


def validate(strength=0.5, radius=2, noise=0.02) -> dict:
  """Checks deflicker arguments; returns them normalised."""
  c = functools.partial(common.check_number, "deflicker")
  return dict(strength=c("strength", strength, 0, 1),
              radius=c("radius", radius, 0, 8, integer=True), noise=c("noise", noise, 0, 0.5))


@jax.jit
def _frame_means(x):
  return x.mean(axis=(1, 2))


def frame_means(frames, chunk: int = common.DEFAULT_CHUNK) -> np.ndarray:
  """Per-frame per-channel means, float64 [T, 3], of frames [T, H, W, 3] (values in [0, 1])."""
  frames = common.check_frames(frames, "deflicker")
  out = []
  for s in range(0, frames.shape[0], chunk):
    out.append(np.asarray(_frame_means(jnp.asarray(common.to_float(frames[s:s + chunk])))))
  return np.concatenate(out).astype(np.float64)


def flicker_gains(means: np.ndarray, strength: float) -> np.ndarray:
  """Gains [T, 3] mapping each frame's means [T, 3] onto their temporal smoothing.

  The reference window's sigma is 12 * strength frames: strength 0.5 averages over ~1 s at 24 fps.
  """
  if strength <= 0:
    return np.ones_like(means, np.float32)
  reference = common.smooth_1d(means, sigma=12.0 * strength)
  gains = (np.maximum(reference, 0) + _EPS) / (means + _EPS)
  return np.clip(gains, 1 / MAX_GAIN, MAX_GAIN).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("radius",))
def _filter(x, gains, radius, noise):
  """x [C + 2r, H, W, 3], gains [C + 2r, 3] -> [C, H, W, 3] for the centre C frames."""
  x = jnp.clip(x * gains[:, None, None, :], 0.0, 1.0)
  if radius == 0:
    return x
  n = x.shape[0] - 2 * radius
  centre = x[radius:radius + n]
  # Temporal Gaussian over the window, times a similarity weight per pixel. Two noisy samples
  # differ by ~1.1 noise (mean |.| over channels), so a scale of 2 * noise keeps their weight
  # high while a real change of a few noise levels (motion) gets almost none.
  time_w = common.gaussian_kernel(max(radius / 2, 0.5), radius)
  scale = 2.0 * jnp.maximum(noise, 1e-4)
  num = jnp.zeros_like(centre)
  den = jnp.zeros(centre.shape[:-1] + (1,), centre.dtype)
  for k in range(2 * radius + 1):
    other = x[k:k + n]
    d = jnp.abs(other - centre).mean(-1, keepdims=True)
    w = float(time_w[k]) * jnp.exp(-0.5 * (d / scale) ** 2)
    num = num + w * other
    den = den + w
  filtered = num / den
  return jnp.where(noise > 0, filtered, centre)


def deflicker(frames, strength: float = 0.5, radius: int = 2, noise: float = 0.02, *,
              chunk: int = common.DEFAULT_CHUNK):
  """Removes brightness/colour flicker and temporal noise from frames [T, H, W, 3].

  frames: uint8 or float in [0, 1]; returns the same shape and dtype. strength: [0, 1], width of
  the brightness reference (sigma = 12 * strength frames; 0 = no gain matching); radius: [0, 8]
  frames each side for the temporal filter (0 = off); noise: [0, 0.5] expected temporal noise
  std in [0, 1] units (0 = temporal filter off).
  """
  p = validate(strength, radius, noise)
  frames = common.check_frames(frames, "deflicker")
  chunk = common.check_chunk(chunk)
  gains = flicker_gains(frame_means(frames, chunk), p["strength"])
  fn = functools.partial(_filter, radius=p["radius"], noise=p["noise"])
  return common.map_chunks(fn, frames, chunk, halo=p["radius"], per_frame=gains)
