"""Stabilization: global translation by phase correlation, trajectory smoothing, warp.

The camera is modelled as a 2-D translation per frame, which is what hand shake and small
generated-video wobble mostly are. Between consecutive frames the shift is the peak of the phase
correlation (whitened cross-power spectrum), refined to sub-pixel by a few Gauss-Newton steps
on the frame difference. The accumulated path is smoothed with a Gaussian over time whose ends are
extended by point reflection, so a steady pan is kept exactly and only the shake is removed.
Each frame is then shifted (bilinear) onto the smoothed path; the borders it uncovers are
cropped (a slight zoom, fixed for the whole clip) or filled.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common

BORDERS = ("crop", "edge", "black", "reflect")
_FILL_MODE = {"crop": "nearest", "edge": "nearest", "black": "constant", "reflect": "mirror"}


def validate(smoothing=15.0, border="crop", max_shift=0.1) -> dict:
  """Checks stabilize arguments; returns them normalised."""
  return dict(smoothing=common.check_number("stabilize", "smoothing", smoothing, 0.5, 500),
              border=common.check_choice("stabilize", "border", border, BORDERS),
              max_shift=common.check_number("stabilize", "max_shift", max_shift, 0, 0.45))


def _phase_correlation(luma):
  """luma [N + 1, H, W] -> whole-pixel content shifts [N, 2] (dx, dy), frame i to i + 1."""
  h, w = luma.shape[1:]
  # The Hann window hides the wrap-around seam that the FFT sees at the frame border.
  window = jnp.outer(jnp.hanning(h), jnp.hanning(w))
  f = jnp.fft.rfft2((luma - luma.mean(axis=(1, 2), keepdims=True)) * window)
  cross = f[1:] * jnp.conj(f[:-1])
  corr = jnp.fft.irfft2(cross / (jnp.abs(cross) + 1e-9), s=(h, w))
  flat = corr.reshape(corr.shape[0], -1).argmax(-1)
  py, px = flat // w, flat % w
  # Peaks past the middle are negative shifts (the correlation is circular).
  return jnp.stack([jnp.where(px > w // 2, px - w, px), jnp.where(py > h // 2, py - h, py)],
                   -1).astype(jnp.float32)


def _refine(a, b, d, iterations):
  """Gauss-Newton (Lucas-Kanade) refinement of one global shift d (dx, dy) from a [H, W] to b.

  Phase correlation alone is biased towards whole pixels (the window does not move with the
  content); minimising sum (b(x) - a(x - d))^2 from its whole-pixel start is accurate to a few
  hundredths of a pixel on textured frames.
  """
  h, w = a.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  for _ in range(iterations):
    sy, sx = ys - d[1], xs - d[0]
    warped = jax.scipy.ndimage.map_coordinates(a, [sy, sx], order=1, mode="nearest")
    gy, gx = jnp.gradient(warped)
    # Only pixels whose source lies inside a (one pixel in, for the gradient) constrain d.
    valid = ((sx >= 1) & (sx <= w - 2) & (sy >= 1) & (sy <= h - 2)).astype(a.dtype)
    r = (b - warped) * valid
    gx, gy = gx * valid, gy * valid
    hess = jnp.array([[(gx * gx).sum(), (gx * gy).sum()], [(gx * gy).sum(), (gy * gy).sum()]])
    rhs = -jnp.array([(gx * r).sum(), (gy * r).sum()])
    step = jnp.linalg.solve(hess + 1e-6 * jnp.eye(2), rhs)
    d = d + jnp.clip(step, -1.0, 1.0)
  return d


@functools.partial(jax.jit, static_argnames=("iterations",))
def _pair_shifts(x, iterations=4):
  """x [N + 1, H, W, 3] -> content shifts [N, 2] as (dx, dy) from frame i to frame i + 1."""
  luma = (x * jnp.asarray(common.LUMA)).sum(-1)
  coarse = _phase_correlation(luma)
  # A light blur keeps the linearisation valid over the half-pixel the refinement starts from.
  smooth = common.gaussian_blur(luma[..., None], 1.0)[..., 0]
  return jax.vmap(functools.partial(_refine, iterations=iterations))(smooth[:-1], smooth[1:],
                                                                      coarse)


def estimate_motion(frames, *, chunk: int = common.DEFAULT_CHUNK) -> np.ndarray:
  """Global content shift between consecutive frames, float64 [T - 1, 2] as (dx, dy) pixels.

  frames: [T, H, W, 3] uint8 or float in [0, 1]. Positive dx: the content moved right.
  """
  frames = common.check_frames(frames, "stabilize")
  t = frames.shape[0]
  out = []
  for start in range(0, t - 1, chunk):
    idx = np.clip(np.arange(start, start + chunk + 1), 0, t - 1)
    shifts = np.asarray(_pair_shifts(jnp.asarray(common.to_float(frames[idx]))))
    out.append(shifts[:min(chunk, t - 1 - start)])
  return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2))


def corrections(shifts: np.ndarray, smoothing: float, max_shift_px=np.inf) -> np.ndarray:
  """Per-frame shift [T, 2] (dx, dy) that moves the content from its path onto the smoothed one.

  shifts: [T - 1, 2] from estimate_motion; max_shift_px: clamp per axis (scalar or [2]).
  """
  path = np.concatenate([np.zeros((1, 2)), np.cumsum(shifts, axis=0)])
  return np.clip(common.smooth_1d(path, smoothing) - path, -max_shift_px, max_shift_px)


@functools.partial(jax.jit, static_argnames=("mode",))
def _warp(x, offsets, scale, mode):
  """x [N, H, W, 3], offsets [N, 2] (dx, dy) -> frames with content moved by offsets.

  The output is also zoomed by 1 / scale about the centre (scale = 1 for no crop).
  """
  _, h, w, _ = x.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  cy, cx = (h - 1) / 2, (w - 1) / 2

  def one(frame, off):
    sy = cy + (ys - cy) * scale - off[1]
    sx = cx + (xs - cx) * scale - off[0]
    return jnp.stack([jax.scipy.ndimage.map_coordinates(frame[..., c], [sy, sx], order=1,
                                                        mode=mode) for c in range(3)], -1)

  return jax.vmap(one)(x, offsets)


def stabilize(frames, smoothing: float = 15.0, border: str = "crop", max_shift: float = 0.1, *,
              chunk: int = common.DEFAULT_CHUNK):
  """Stabilizes frames [T, H, W, 3] (uint8 or float in [0, 1]); same shape and dtype out.

  smoothing: [0.5, 500], sigma in frames of the Gaussian applied to the camera path (larger
  removes slower wobble); border: 'crop' (zoom in just enough to hide every uncovered border),
  'edge' (replicate), 'black', 'reflect'; max_shift: [0, 0.45], largest correction as a
  fraction of the frame size, so a cut or a fast whip pan is not "stabilized" away.
  """
  p = validate(smoothing, border, max_shift)
  frames = common.check_frames(frames, "stabilize")
  chunk = common.check_chunk(chunk)
  t, h, w, _ = frames.shape
  if t < 2:
    return frames.copy()
  limit = np.array([w, h]) * p["max_shift"]
  offsets = corrections(estimate_motion(frames, chunk=chunk), p["smoothing"], limit)
  scale = 1.0
  if p["border"] == "crop":
    margin = np.abs(offsets).max(axis=0)  # (x, y)
    scale = float(min(1 - 2 * margin[0] / max(w - 1, 1), 1 - 2 * margin[1] / max(h - 1, 1)))
  fn = functools.partial(_warp, scale=scale, mode=_FILL_MODE[p["border"]])
  return common.map_chunks(fn, frames, chunk, per_frame=offsets.astype(np.float32))
