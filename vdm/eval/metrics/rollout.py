"""Per-frame scores of a generated clip against its prompt, for rollouts of any length.

On the spine's synthetic world a correct frame holds exactly two colours, the prompt's background
and object colour, with one object of the prompt's colour on it. That makes three per-frame
measurements exact without a reference clip, so they apply past the training length, where no
ground truth exists for a generated continuation:
  * colour_error: mean distance of each pixel to the nearer of the two prompt colours (0 for a
    clean frame; rises as frames blur, smear or change colour), in units of the RGB diagonal;
  * object_ok: an object is present and its colour is the prompt's;
  * flicker: mean absolute change of the background between consecutive frames (0 when the
    background holds still), in units of 255.
Their means against frame index are the drift curves (`vdm.eval.metrics.drift.curve`).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vdm.data import simple
from vdm.eval import adherence
from vdm.eval.metrics.motion import stalls

_RGB_DIAGONAL = float(np.sqrt(3) * 255.0)


def frame_scores(video, color: int, background: int, *, wrap: bool = False) -> dict:
  """Scores video uint8 [T, H, W, 3] against palette indices of the prompt's object/background
  (wrap: a wrapped clip, whose object is found across the frame's edges).

  Returns dict of float64 [T]: colour_error, object_ok (0/1), flicker (nan at frame 0); and
  centers float [T, 2] (nan where no object), from `adherence.detect_object`.
  """
  video = np.asarray(video)
  pixels = video.astype(np.float64)
  palette = simple.PALETTE.astype(np.float64)
  to_bg = np.linalg.norm(pixels - palette[background], axis=-1)
  to_obj = np.linalg.norm(pixels - palette[color], axis=-1)
  colour_error = np.minimum(to_bg, to_obj).mean(axis=(1, 2)) / _RGB_DIAGONAL

  detected = adherence.detect_object(video, wrap=wrap)
  mask = detected["mask"]  # [T, H, W]
  object_ok = np.zeros(len(video))
  for t in range(len(video)):
    if mask[t].any():
      rgb = np.median(pixels[t][mask[t]], axis=0)
      object_ok[t] = float(adherence.nearest_color(rgb) == int(color))

  # Background = away from the object in both frames (dilated: blurred edges are not flicker).
  near_object = np.stack([ndimage.binary_dilation(m, iterations=2) for m in mask])
  flicker = np.full(len(video), np.nan)
  for t in range(1, len(video)):
    still = ~(near_object[t] | near_object[t - 1])
    if still.any():
      flicker[t] = np.abs(pixels[t] - pixels[t - 1])[still].mean() / 255.0
  return dict(colour_error=colour_error, object_ok=object_ok, flicker=flicker,
              centers=detected["centers"])


def stall_fraction(centers, direction: int, *, speed: float, frames: int | None = None) -> float:
  """Fraction of steps in the first `frames` frames whose object speed is below a quarter of the
  caption's (`speed` px/frame along `direction`; a missing object counts as stalled).

  The expected path starts at the first detected centre and is judged only while it stays in the
  frame region the object reached, so an object that stops at a wall after moving is not a stall.
  """
  c = np.asarray(centers, np.float64)[:frames]
  found = np.nonzero(np.isfinite(c).all(axis=1))[0]
  if len(c) < 3 or not len(found):
    return 1.0
  start = c[found[0]]
  steps = np.arange(len(c), dtype=np.float64)[:, None] - found[0]
  expected = start + steps * speed * simple.DIRECTION_VECTORS[direction]
  result = stalls(c, expected, ratio=0.25, min_speed=0.5 * speed, window=2)
  return float(result["fraction"]) if np.isfinite(result["fraction"]) else 0.0
