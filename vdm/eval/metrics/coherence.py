"""Long-clip coherence: is the prompt still true at the end of a long clip?

A long rollout can look fine frame by frame and still have lost its prompt: the object stops,
turns round, jumps, fades or changes colour. On the spine's world the prompt fixes what must
still hold in the last quarter of any clip, however long (on wrapped clips, `vdm.data.simple`,
the object never runs out of frame):

  * motion kept: the object's track over the last quarter (unwrapped on the torus) has its
    least-squares velocity along the caption's direction (the dominant axis and its sign) at a
    speed the caption allows (the data's speed range for that direction, with a factor-2 margin
    either way); a stalled, reversed, frozen or lost object fails;
  * identity kept: in most last-quarter frames the object is there and has the caption's colour,
    and its size is that of the first quarter (area within a factor 2), so it has not melted
    into a blob or shrunk to a speck.

Ground-truth clips rendered at 1x-16x the training length pass; reversed, frozen, recoloured or
vanishing ones fail (tests/test_coherence.py).
"""
from __future__ import annotations

import numpy as np

from vdm.data import simple
from vdm.eval import adherence

SPEED_MARGIN = 2.0  # the speed may be this factor below the slowest or above the fastest
MIN_FOUND = 0.75    # fraction of last-quarter frames that must show the object (in its colour)
SIZE_RATIO = 2.0    # the last quarter's object area within this factor of the first quarter's


def quarter(frames: int) -> int:
  """Frames in the last (and first) quarter of a clip: a quarter, at least 3."""
  return min(frames, max(3, frames // 4))


def frame_colors(video: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Palette index of the object in each frame (its most object-like pixels), -1 where the
  mask is empty: int [T]."""
  pixels = np.asarray(video, np.float32)
  out = np.full(len(video), -1)
  for t in range(len(video)):
    if mask[t].any():
      out[t] = adherence.nearest_color(np.median(pixels[t][mask[t]], axis=0))
  return out


def coherence(video, *, color: int, direction: int, speed_range: tuple[float, float],
              wrap: bool = True) -> dict:
  """Scores a clip uint8 [T, H, W, 3] against its caption's colour and direction indices.

  speed_range: (lowest, highest) px/frame the caption allows (`vdm.data.simple.speed_range` at
  the training clip's size and length). wrap: the clip's world is a torus.
  Returns dict: motion_ok, colour_ok, size_ok, coherent (all three) as bools; speed (px/frame
  along the caption's direction, nan if not measurable), detected_direction (-1: none),
  found (fraction of last-quarter frames with the object in the caption's colour), size_ratio.
  """
  video = np.asarray(video)
  frames, height, width = video.shape[:3]
  n = quarter(frames)
  detected = adherence.detect_object(video, wrap=wrap)
  centers = detected["centers"].astype(np.float64)
  if wrap:
    centers = adherence.unwrap_track(centers, (width, height))
  colors = frame_colors(video, detected["mask"])
  last = slice(frames - n, frames)
  right_colour = colors[last] == int(color)
  found = float(right_colour.mean())
  track = np.where(right_colour[:, None], centers[last], np.nan)
  fit = adherence.track_slope(track) if right_colour.sum() >= 2 else None
  if fit is None:
    speed, heading = float("nan"), -1
  else:
    velocity = fit[0]
    heading = adherence.direction_of(velocity)
    speed = float(velocity @ simple.DIRECTION_VECTORS[int(direction)])
  lo, hi = speed_range
  motion_ok = bool(heading == int(direction) and lo / SPEED_MARGIN <= speed <= hi * SPEED_MARGIN
                   and found >= MIN_FOUND)
  area = detected["mask"].sum(axis=(1, 2)).astype(np.float64)
  first_area = np.median(area[:n][colors[:n] == int(color)]) if (colors[:n] == int(color)).any() \
      else np.nan
  last_area = np.median(area[last][right_colour]) if right_colour.any() else np.nan
  size_ratio = float(last_area / first_area) if first_area > 0 else float("nan")
  size_ok = bool(1.0 / SIZE_RATIO <= size_ratio <= SIZE_RATIO)
  colour_ok = found >= MIN_FOUND
  return dict(motion_ok=motion_ok, colour_ok=colour_ok, size_ok=size_ok,
              coherent=motion_ok and colour_ok and size_ok, speed=speed,
              detected_direction=int(heading), found=found, size_ratio=size_ratio)


def summarize(rows) -> dict:
  """Fractions over scored clips: motion_ok, colour_ok, size_ok, coherent (and n)."""
  keys = ("motion_ok", "colour_ok", "size_ok", "coherent")
  if not rows:
    return dict({k: float("nan") for k in keys}, n=0)
  return dict({k: float(np.mean([r[k] for r in rows])) for k in keys}, n=len(rows))
