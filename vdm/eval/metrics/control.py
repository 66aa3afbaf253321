"""Control metrics, judged from the pixels: does the clip follow the requested object path, the
requested camera, and the prompt timeline?

  trajectory  an object's centre per frame by its colour (the scenes palette; the detector
              recovers ground-truth centres of symmetric shapes to a fraction of a pixel), and
              its distance from the requested path in px per frame
  camera      the global motion from each frame to the next (scale about the centre and a
              shift, fitted to the background by Gauss-Newton on the image), and its endpoint
              distance from the requested camera's motion, px per frame
  timeline    frames until the new prompt is followed (adherence lag), whether the object is
              there through a switch (identity kept), the frame-difference spike at the switch,
              and how many frame steps a hard cut takes (1 for a clean cut)

Videos are uint8 [T, H, W, 3]; points are (x, y) pixels, x the column, y the row.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vdm.data import scenes

PALETTE = scenes.PALETTE.astype(np.float64)  # [10, 3]
# Scenes palette colours differ by >= 128 in RGB distance (orange vs red); a pixel within 0.45 of
# that of the object's colour belongs to it, with room for a generated clip's blur and noise.
COLOR_RADIUS = 0.45 * 128.0


def nearest_color(rgb, palette=None) -> int:
  """Index of the palette colour nearest to rgb [3]; palette [K, 3] (default: the scenes')."""
  palette = PALETTE if palette is None else np.asarray(palette, np.float64)
  return int(np.argmin(np.linalg.norm(palette - np.asarray(rgb, np.float64), axis=-1)))


def _largest_component(mask: np.ndarray) -> np.ndarray:
  labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if count <= 1:
    return mask
  return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def color_masks(video, color: int, *, radius: float = COLOR_RADIUS) -> np.ndarray:
  """bool [T, H, W]: per frame, the largest blob of pixels within `radius` of palette colour
  `color` and nearer to it than to any other palette colour."""
  pixels = np.asarray(video, np.float64)
  distance = np.linalg.norm(pixels[..., None, :] - PALETTE, axis=-1)  # [T, H, W, 10]
  near = (distance.argmin(-1) == color) & (distance[..., color] <= radius)
  return np.stack([_largest_component(m) for m in near])


def object_centers(video, color: int, *, min_pixels: int = 2) -> np.ndarray:
  """Centroid (x, y) of the object of palette colour `color` per frame, float64 [T, 2]; nan
  where fewer than `min_pixels` pixels are found."""
  masks = color_masks(video, color)
  ys, xs = np.mgrid[0:masks.shape[1], 0:masks.shape[2]]
  area = masks.sum(axis=(1, 2)).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    c = np.stack([(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], -1)
  c[area < min_pixels] = np.nan
  return c


def trajectory_error(centers, requested) -> dict:
  """Distance in px between detected centres [T, 2] (nan: not found) and the requested path
  [T, 2]: dict(per_frame float64 [T] (nan where not found), mean (over found frames; nan if
  none), found (fraction of frames))."""
  c, r = np.asarray(centers, np.float64), np.asarray(requested, np.float64)
  if c.shape != r.shape or c.ndim != 2 or c.shape[1] != 2:
    raise ValueError(f"centers and requested must both be [T, 2], got {c.shape} and {r.shape}")
  per_frame = np.linalg.norm(c - r, axis=-1)
  found = np.isfinite(per_frame)
  return dict(per_frame=per_frame, mean=float(per_frame[found].mean()) if found.any()
              else float("nan"), found=float(found.mean()))


# ----------------------------------------------------------------------------- camera

def _gray(frame: np.ndarray) -> np.ndarray:
  # A light blur keeps the Gauss-Newton fit smooth over nearest-neighbour rendered textures.
  return ndimage.gaussian_filter(np.asarray(frame, np.float64).mean(-1), 1.0)


def _warp(image: np.ndarray, r: float, ox: float, oy: float, xs, ys) -> np.ndarray:
  """image sampled (bilinear) at r * (x, y) + (ox, oy); nan outside it."""
  h, w = image.shape
  u, v = r * xs + ox, r * ys + oy
  out = ndimage.map_coordinates(image, [v, u], order=1, mode="nearest")
  out[(u < 0) | (u > w - 1) | (v < 0) | (v > h - 1)] = np.nan
  return out


def estimate_step(a, b, *, ignore=None, iterations: int = 30) -> np.ndarray:
  """The motion (r, ox, oy) from frame a to frame b (uint8 or float [H, W, 3]): a pixel p of a
  shows at r * p + (ox, oy) in b. Fitted to pixels not in `ignore` (bool [H, W], e.g. the
  objects), from the best of a coarse grid of shifts and scales, by Gauss-Newton on
  b(r p + o) = a(p). Returns float64 [3]."""
  ga, gb = _gray(a), _gray(b)
  h, w = ga.shape
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  keep = np.ones((h, w), bool) if ignore is None else ~ndimage.binary_dilation(ignore,
                                                                                iterations=1)
  cx, cy = (w - 1) / 2, (h - 1) / 2

  def residual(p):
    r, ox, oy = p
    e = _warp(gb, r, ox, oy, xs, ys) - ga
    e[~keep] = np.nan
    return e

  def cost(p):
    e = residual(p)
    ok = np.isfinite(e)
    return np.mean(e[ok] ** 2) if ok.sum() > 0.25 * h * w else np.inf

  # Coarse: scales about the centre (o = c (1 - r) + shift), integer shifts.
  grid = [(r, cx * (1 - r) + dx, cy * (1 - r) + dy) for r in (0.95, 1.0, 1.05)
          for dx in range(-3, 4) for dy in range(-3, 4)]
  p = np.array(min(grid, key=cost), np.float64)
  gy, gx = np.gradient(gb)
  for _ in range(iterations):
    e = residual(p)
    r, ox, oy = p
    jx = _warp(gx, r, ox, oy, xs, ys)
    jy = _warp(gy, r, ox, oy, xs, ys)
    # d/dr of b(r p + o) = gx x + gy y; d/do = (gx, gy).
    jac = np.stack([jx * xs + jy * ys, jx, jy], -1)
    ok = np.isfinite(e) & np.isfinite(jac).all(-1)
    if ok.sum() < 0.25 * h * w:
      break
    j, res = jac[ok], e[ok]
    step = np.linalg.lstsq(j.T @ j + 1e-6 * np.eye(3), -j.T @ res, rcond=None)[0]
    p = p + step
    if np.abs(step[1:]).max() < 1e-4 and abs(step[0]) < 1e-6:
      break
  return p


def estimate_camera(video, *, ignore=None) -> np.ndarray:
  """Global motion of each frame to the next, float64 [T-1, 3] (r, ox, oy) (`estimate_step`);
  ignore: bool [T, H, W] pixels to leave out (the objects) or None."""
  video = np.asarray(video)
  return np.stack([estimate_step(video[t], video[t + 1], ignore=None if ignore is None else
                                 ignore[t] | ignore[t + 1]) for t in range(len(video) - 1)])


def camera_error(estimated, requested, height: int, width: int) -> dict:
  """Endpoint error in px between two sets of per-step motions [T-1, 3] (r, ox, oy), averaged
  over the frame's pixels: dict(per_step float64 [T-1], mean)."""
  e, q = np.asarray(estimated, np.float64), np.asarray(requested, np.float64)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
  dr, dx, dy = (e - q).T
  per_step = np.array([np.hypot(dr[t] * xs + dx[t], dr[t] * ys + dy[t]).mean()
                       for t in range(len(e))])
  return dict(per_step=per_step, mean=float(per_step.mean()))


# ----------------------------------------------------------------------------- timelines

def frame_colors(video, palette=None) -> np.ndarray:
  """Per frame, the palette colour of the most saturated-unlike-the-background blob: the
  object's colour index, int [T] (-1 where no object stands out from the border's colour).
  palette [K, 3]: the colours of the clip's world (default: the scenes'; the spine's clips have
  six, and the scenes' in-between ones, orange and purple, would take a blurred red or magenta)."""
  pixels = np.asarray(video, np.float64)
  border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], 1)
  background = np.median(border, axis=1)  # [T, 3]
  out = np.full(len(pixels), -1, np.int64)
  for t, (frame, bg) in enumerate(zip(pixels, background)):
    distance = np.linalg.norm(frame - bg, axis=-1)
    mask = _largest_component(distance > COLOR_RADIUS)
    if mask.sum() >= 2:
      core = frame[mask][distance[mask] >= np.median(distance[mask])]
      out[t] = nearest_color(np.median(core, axis=0), palette)
  return out


def adherence_lag(follows, switch_frame: int, present=None) -> int | None:
  """Frames after `switch_frame` until a clip follows its new prompt for good: the smallest
  lag such that every frame from switch_frame + lag on that shows the object follows it; None
  if the last such frame does not (or none after the switch shows it). follows: bool [T] per
  frame; present: bool [T], the frames where an object is found (default: all). A frame
  without the object neither follows nor breaks the prompt: an object may leave the frame, as
  the ground truth of a plain clip past its training length does (object presence through the
  switch is its own measure)."""
  follows = np.asarray(follows, bool)
  present = np.ones_like(follows) if present is None else np.asarray(present, bool)
  follows, present = follows[switch_frame:], present[switch_frame:]
  shown = np.nonzero(present)[0]
  if not len(shown) or not follows[shown[-1]]:
    return None
  bad = np.nonzero(present & ~follows)[0]
  return 0 if not len(bad) else int(bad[-1]) + 1


def step_differences(video) -> np.ndarray:
  """Mean absolute change per frame step, float64 [T-1] (0-255 scale)."""
  v = np.asarray(video, np.float64)
  return np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3))


def switch_spike(video, switch_frame: int) -> float:
  """The change into `switch_frame` over the median change of the other steps (1: no spike)."""
  d = step_differences(video)
  others = np.delete(d, switch_frame - 1)
  return float(d[switch_frame - 1] / max(np.median(others), 1e-6))


def cut_steps(video, cut_frame: int, *, window: int = 3, fraction: float = 0.5) -> int:
  """How many frame steps a hard cut at `cut_frame` takes: steps within `window` of it whose
  change is at least `fraction` of the largest there. A clean cut is 1 step; a blend over k
  frames, about k."""
  d = step_differences(video)
  lo, hi = max(0, cut_frame - 1 - window), min(len(d), cut_frame + window)
  near = d[lo:hi]
  return int((near >= fraction * near.max()).sum())
