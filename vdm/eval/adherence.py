"""Prompt adherence on synthetic data, judged from the pixels alone.

A generated clip for "a red circle moving right on a blue background" adheres if the one object
that differs from the background is nearest to red in the palette and its centroid moves right.
The detector is calibrated on ground-truth clips from `vdm.data.simple` (see
tests/test_adherence.py), including blurred and noisy ones, because generated clips are both.
"""
from typing import Sequence

import numpy as np
from scipy import ndimage

from vdm.data import simple

_PALETTE = simple.PALETTE.astype(np.float32)  # [K, 3]
# Palette colours differ by >= 255 in RGB distance; 0.4 of that separates object from background
# with a wide margin against noise (std 15 per channel, ~26 in distance, before smoothing).
_COARSE_THRESHOLD = 0.4 * 255.0
# Floor for the refined threshold so a faint, washed-out object still splits from noise.
_MIN_THRESHOLD = 40.0


def nearest_color(rgb: np.ndarray) -> int:
  """Index of the palette colour nearest to rgb [3]."""
  return int(np.argmin(np.linalg.norm(_PALETTE - rgb, axis=-1)))


def _smooth3(video: np.ndarray) -> np.ndarray:
  """3x3 binomial blur of float [T, H, W, C] (edge-padded): averages out pixel noise.

  Binomial rather than box weights keep the centre pixel strong, so objects only a few pixels
  wide (radius ~2 at 16x16) survive the smoothing.
  """
  padded = np.pad(video, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = video.shape[1:3]
  k = (1.0, 2.0, 1.0)
  return sum(k[i] * k[j] * padded[:, i:i + h, j:j + w]
             for i in range(3) for j in range(3)) / 16.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
  """Keeps the largest 8-connected blob of bool [H, W]; drops speckles and artefacts."""
  labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if count <= 1:
    return mask
  sizes = np.bincount(labels.ravel())[1:]
  return labels == 1 + int(np.argmax(sizes))


def _masks(distance: np.ndarray, threshold: np.ndarray) -> np.ndarray:
  """Per-frame largest blob of distance [T, H, W] > threshold [T]: bool [T, H, W]."""
  return np.stack([_largest_component(d > thr) for d, thr in zip(distance, threshold)])


def _seams(video: np.ndarray) -> np.ndarray:
  """Per frame, the (column, row) [T, 2] int with the fewest object-like pixels: where a
  wrapped frame can be cut without cutting the object (it never spans the whole frame)."""
  pixels = video.astype(np.float32)
  border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0],
                           pixels[:, 1:-1, -1]], axis=1)
  distance = np.linalg.norm(_smooth3(pixels) - np.median(border, axis=1)[:, None, None], axis=-1)
  coarse = distance > _COARSE_THRESHOLD  # [T, H, W]
  return np.stack([coarse.sum(axis=1).argmin(axis=1), coarse.sum(axis=2).argmin(axis=1)], -1)


def detect_object(video: np.ndarray, *, wrap: bool = False) -> dict:
  """Finds the single object in a clip.

  Args:
    video: uint8 [T, H, W, 3].
    wrap: the frames are a torus (`vdm.data.simple` wrapped clips): each frame is first rolled so
      that its emptiest column and row are the border, so an object split by the edge is found
      whole; centres are then given modulo the frame size.
  Returns:
    dict with 'color' (palette index, -1 if nothing found), 'centers' float32 [T, 2] (x, y
    centroid, nan where not found), 'mask' bool [T, H, W] and 'background' (palette index).
  """
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f"video must be [T, H, W, 3], got shape {video.shape}")
  if wrap:
    seams = _seams(video)
    rolled = np.stack([np.roll(f, (-sy, -sx), axis=(0, 1)) for f, (sx, sy) in zip(video, seams)])
    found = detect_object(rolled)
    height, width = video.shape[1:3]
    found["mask"] = np.stack([np.roll(m, (sy, sx), axis=(0, 1))
                              for m, (sx, sy) in zip(found["mask"], seams)])
    found["centers"] = ((found["centers"] + seams) % np.array([width, height])).astype(np.float32)
    return found
  pixels = video.astype(np.float32)
  frames, height, width, _ = pixels.shape
  # The object never covers most of the border, so its median is the background colour.
  border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0],
                           pixels[:, 1:-1, -1]], axis=1)  # [T, P, 3]
  background_rgb = np.median(border, axis=1)  # [T, 3]
  background = nearest_color(np.median(background_rgb, axis=0))
  distance = np.linalg.norm(_smooth3(pixels) - background_rgb[:, None, None], axis=-1)

  # Coarse pass with a fixed threshold estimates the object colour; the fine pass then cuts
  # halfway between background and object, which keeps blurred edges balanced so the centroid
  # stays unbiased even when the generated colours are off.
  mask = _masks(distance, np.full(frames, _COARSE_THRESHOLD))
  if mask.any():
    object_rgb = _object_rgb(pixels, distance, mask)
    contrast = np.linalg.norm(object_rgb - background_rgb, axis=-1)  # [T]
    mask = _masks(distance, np.maximum(0.5 * contrast, _MIN_THRESHOLD))
  if not mask.any():
    return dict(color=-1, centers=np.full((frames, 2), np.nan, np.float32), mask=mask,
                background=background)
  color = nearest_color(_object_rgb(pixels, distance, mask))

  area = mask.sum(axis=(1, 2)).astype(np.float64)  # [T]
  ys, xs = np.arange(height), np.arange(width)
  with np.errstate(invalid="ignore", divide="ignore"):
    cx = (mask.sum(axis=1) * xs).sum(axis=1) / area
    cy = (mask.sum(axis=2) * ys).sum(axis=1) / area
  centers = np.stack([cx, cy], axis=-1).astype(np.float32)  # nan where area == 0
  return dict(color=color, centers=centers, mask=mask, background=background)


def _object_rgb(pixels: np.ndarray, distance: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Median colour [3] of the most object-like half of the masked pixels.

  Blurred edge pixels mix object and background; a plain median over a small blob can land
  between two palette colours, while the pixels farthest from the background are the core.
  """
  d = distance[mask]
  core = pixels[mask][d >= np.median(d)]
  return np.median(core, axis=0)


def unwrap_track(centers: np.ndarray, period) -> np.ndarray:
  """Centres [T, 2] measured modulo period (width, height) -> a continuous track: each step
  between found frames is taken as the shortest way round the torus (steps are far below half
  the frame). Frames without an object (nan) stay nan."""
  centers = np.array(centers, np.float64)
  found = np.all(np.isfinite(centers), axis=1)
  if found.sum() > 1:
    centers[found] = np.unwrap(centers[found], axis=0, period=np.asarray(period, np.float64))
  return centers


def track_slope(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
  """(least-squares velocity [2] px/frame, frame indices of the found centres) of centers
  float [T, 2] (nan = not found), or None with fewer than 2 found frames."""
  centers = np.asarray(centers, np.float64)
  found = np.all(np.isfinite(centers), axis=1)
  t = np.nonzero(found)[0].astype(np.float64)
  if len(t) < 2:
    return None
  xy = centers[found]
  tc = t - t.mean()
  return (tc[:, None] * (xy - xy.mean(axis=0))).sum(axis=0) / (tc**2).sum(), t


def direction_of(velocity) -> int:
  """Index into DIRECTIONS of the dominant axis of a velocity (dx, dy); y grows downward."""
  dx, dy = velocity
  if abs(dx) >= abs(dy):
    name = "right" if dx > 0 else "left"
  else:
    name = "down" if dy > 0 else "up"
  return simple.DIRECTIONS.index(name)


def motion_direction(centers: np.ndarray, *, min_displacement: float = 1.0,
                     min_found_fraction: float = 0.5, period=None) -> int:
  """Index into DIRECTIONS of the net motion of centers float [T, 2] (x, y; nan = not found).

  Net displacement is the least-squares slope times the time spanned, which is robust to a
  jittery centroid in any one frame. The dominant axis decides; y grows downward, so 'up' is
  negative dy. Returns -1 if fewer than max(2, min_found_fraction * T) frames have an object or
  the displacement is below min_displacement pixels. period: (width, height) of a wrapped clip,
  whose centres are first unwrapped (`unwrap_track`).
  """
  centers = np.asarray(centers, np.float64)
  if centers.ndim != 2 or centers.shape[1] != 2:
    raise ValueError(f"centers must be [T, 2], got shape {centers.shape}")
  if period is not None:
    centers = unwrap_track(centers, period)
  found = np.all(np.isfinite(centers), axis=1)
  if found.sum() < max(2, min_found_fraction * len(centers)):
    return -1
  slope, t = track_slope(centers)  # [2] px/frame
  dx, dy = slope * (t[-1] - t[0])
  if np.hypot(dx, dy) < min_displacement:
    return -1
  return direction_of((dx, dy))


def score(video: np.ndarray, color: int, direction: int, *, wrap: bool = False) -> dict:
  """Judges video uint8 [T, H, W, 3] against the intended colour and direction indices
  (wrap: the clip is on a torus, `detect_object`).

  Returns dict(color_ok, direction_ok, detected_color, detected_direction); -1 means not found.
  """
  video = np.asarray(video)
  detected = detect_object(video, wrap=wrap)
  period = (video.shape[2], video.shape[1]) if wrap else None
  detected_direction = motion_direction(detected["centers"], period=period)
  return dict(color_ok=detected["color"] == int(color),
              direction_ok=detected_direction == int(direction),
              detected_color=detected["color"], detected_direction=detected_direction)


def summarize(scores: Sequence[dict]) -> dict:
  """Mean accuracies over score() results: dict(color_accuracy, direction_accuracy, n).

  Accuracies are nan when there are no scores.
  """
  n = len(scores)
  if n == 0:
    return dict(color_accuracy=float("nan"), direction_accuracy=float("nan"), n=0)
  return dict(color_accuracy=float(np.mean([s["color_ok"] for s in scores])),
              direction_accuracy=float(np.mean([s["direction_ok"] for s in scores])), n=n)
