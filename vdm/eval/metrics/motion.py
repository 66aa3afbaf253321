"""Motion accuracy from object centres: frozen-motion stalls, trajectory error against a
ground-truth continuation, and physical plausibility of bounces.

Centres are float [T, 2] (x, y) pixels with nan where the object was not found, as
`adherence.detect_object` returns them; ground truth comes from `simple.centers` or
`scenes.render_scene(...)[1]['center'][:, k]`.
"""
from __future__ import annotations

import numpy as np


def speeds(centers, window: int = 1) -> np.ndarray:
  """Speed in px/frame over `window` frames: float [T, 2] -> float64 [T - window] (nan where
  either end is missing). A window > 1 averages out centroid jitter of a pixelated object."""
  c = np.asarray(centers, np.float64)
  if c.ndim != 2 or c.shape[1] != 2:
    raise ValueError(f"centers must be [T, 2], got shape {c.shape}")
  if not 1 <= window < len(c):
    raise ValueError(f"window must be in [1, T) = [1, {len(c)}), got {window}")
  return np.linalg.norm(c[window:] - c[:-window], axis=-1) / window


def stalls(centers, true_centers, *, ratio: float = 0.25, min_speed: float = 0.5,
           window: int = 2) -> dict:
  """Frozen motion: steps where the measured speed falls below `ratio` x the true speed.

  Only steps whose true speed is at least min_speed px/frame count (a still object cannot
  stall); a missing object counts as stalled, since it is not moving as told. For a prompt
  with no ground-truth clip, pass the straight path at the caption's speed as true_centers.

  Args:
    centers, true_centers: float [T, 2] measured and true (x, y).
    ratio: a step is stalled when measured < ratio * true speed.
    min_speed: true speed (px/frame) below which a step is not judged.
    window: frames per speed measurement (see `speeds`).
  Returns:
    dict(stalled bool [T - window] (False where not judged), judged bool [T - window],
    fraction float (stalled / judged; nan if none judged), longest int (longest run of
    consecutive stalled steps)).
  """
  measured = speeds(centers, window)
  truth = speeds(true_centers, window)
  if measured.shape != truth.shape:
    raise ValueError(f"centers and true_centers differ in length: {len(measured)} vs "
                     f"{len(truth)} steps")
  judged = truth >= min_speed
  stalled = judged & ~(measured >= ratio * truth)  # nan (missing) counts as stalled
  longest = run = 0
  for s in stalled:
    run = run + 1 if s else 0
    longest = max(longest, run)
  fraction = float(stalled.sum() / judged.sum()) if judged.any() else float("nan")
  return dict(stalled=stalled, judged=judged, fraction=fraction, longest=longest)


def trajectory_error(centers, true_centers, *, start: int = 0) -> dict:
  """Distance from the true path, e.g. of an image-to-video or extension continuation.

  Args:
    centers, true_centers: float [T, ..., 2] (x, y); extra axes (objects) are allowed.
    start: first frame scored (the number of given frames, which are copied, not predicted).
  Returns:
    dict(per_frame float64 [T - start] mean distance in px over objects found in that frame
    (nan if none), mean float over found (frame, object) pairs, found float fraction).
  """
  c = np.asarray(centers, np.float64)[start:]
  g = np.asarray(true_centers, np.float64)[start:]
  if c.shape != g.shape or c.shape[-1] != 2:
    raise ValueError(f"centers and true_centers must share a [T, ..., 2] shape, got "
                     f"{c.shape} vs {g.shape}")
  dist = np.linalg.norm(c - g, axis=-1).reshape(len(c), -1)  # [T', K]
  found = np.isfinite(dist)
  with np.errstate(invalid="ignore"):
    per_frame = np.nansum(dist, axis=1) / found.sum(axis=1)
  mean = float(dist[found].mean()) if found.any() else float("nan")
  return dict(per_frame=per_frame, mean=mean, found=float(found.mean()))


def _reflect(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Position with unfolded coordinate u bouncing elastically between lo and hi."""
  span = hi - lo
  return lo + span - np.abs(np.mod(u - lo, 2 * span) - span)


def _cell(values: np.ndarray, at: float) -> float:
  """Largest gap between `at` and its neighbours in the (unsorted) grid `values`: the window
  the next, finer round must cover."""
  v = np.unique(values)
  i = int(np.searchsorted(v, at))
  gaps = [v[k + 1] - v[k] for k in (i - 1, i) if 0 <= k < len(v) - 1]
  return float(max(gaps)) if gaps else 0.0


def _fit_axis(x: np.ndarray, lo: float, hi: float, max_speed: float,
              grid: int = 128, rounds: int = 4) -> np.ndarray:
  """Best elastic-bounce path [T] (least squares) through samples x [T] (nan = skip).

  The path is reflect(u0 + v t) with two unknowns. The residual has many local minima (one
  per bounce count), which would trap a local optimiser, so the first round searches a grid:
  one period of u0 times speeds in [-max_speed, max_speed] plus a fine band around the
  median step |dx| (an elastic bounce keeps |dx| per frame except at the bounce itself, so
  that is where the answer lies for any plausible path); later rounds refine the best cell.
  """
  t = np.arange(len(x), dtype=np.float64)
  ok = np.isfinite(x)
  span = hi - lo
  step = np.abs(np.diff(x))
  typical = float(np.nanmedian(step)) if np.isfinite(step).any() else 0.0
  band = typical * np.linspace(0.8, 1.2, grid // 2)
  u = np.linspace(lo, lo + 2 * span, grid)
  v = np.concatenate([np.linspace(-max_speed, max_speed, grid), band, -band])
  for r in range(rounds):
    if r:
      u = np.linspace(best[0] - du, best[0] + du, grid // 4)
      v = np.linspace(best[1] - dv, best[1] + dv, grid // 4)
    path = _reflect(u[:, None, None] + v[None, :, None] * t[ok], lo, hi)  # [U, V, T_ok]
    cost = ((path - x[ok]) ** 2).sum(axis=-1)
    i, j = np.unravel_index(np.argmin(cost), cost.shape)
    best = (u[i], v[j])
    du, dv = _cell(u, best[0]), _cell(v, best[1])
  return _reflect(best[0] + best[1] * t, lo, hi)


def bounce_plausibility(centers, bounds, *, max_speed: float | None = None) -> dict:
  """Distance of a measured path from the nearest physically valid bounce.

  An object bouncing in a box moves at constant velocity and reflects elastically at the
  walls, so each axis follows reflect(u0 + v t) between the box's limits. The residual of the
  best such path says how far the clip is from any valid physics (stopping in mid-air,
  reversing before the wall, passing through it, changing speed), whatever the start and
  velocity: it needs no ground-truth trajectory, only the box.

  Args:
    centers: float [T, 2] measured (x, y) (nan where not found).
    bounds: (x_lo, x_hi, y_lo, y_hi) the centre bounces within (`scenes.ObjectSpec.bounds`,
      mapped to the image; the 'long' split's camera is static, so they coincide).
    max_speed: px/frame searched; defaults to half the box's larger extent per frame.
  Returns:
    dict(residual float64 [T] distance in px to the fitted path, mean float, fitted [T, 2],
    outside float mean distance beyond the box, px).
  """
  c = np.asarray(centers, np.float64)
  if c.ndim != 2 or c.shape[1] != 2 or len(c) < 3:
    raise ValueError(f"centers must be [T >= 3, 2], got shape {c.shape}")
  x_lo, x_hi, y_lo, y_hi = (float(b) for b in bounds)
  if not (x_hi > x_lo and y_hi > y_lo):
    raise ValueError(f"bounds must be (x_lo, x_hi, y_lo, y_hi) with lo < hi, got {bounds}")
  if max_speed is None:
    max_speed = 0.5 * max(x_hi - x_lo, y_hi - y_lo)
  fitted = np.stack([_fit_axis(c[:, 0], x_lo, x_hi, max_speed),
                     _fit_axis(c[:, 1], y_lo, y_hi, max_speed)], axis=-1)
  residual = np.linalg.norm(c - fitted, axis=-1)
  over = np.maximum(np.maximum(x_lo - c[:, 0], c[:, 0] - x_hi), 0) + \
      np.maximum(np.maximum(y_lo - c[:, 1], c[:, 1] - y_hi), 0)
  return dict(residual=residual, mean=float(np.nanmean(residual)), fitted=fitted,
              outside=float(np.nanmean(over)))
