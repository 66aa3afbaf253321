"""Natural-image clips: a virtual hand-held camera filming a still photo.

The synthetic scenes are drawn with hard edges and nearest-neighbour textures: right for exact
ground truth, but not what a camera records. A camera's optics low-pass the scene before the
sensor samples it, and hand-held motion is smooth, sub-pixel and slightly rotating. Models that
must transfer to real footage (the learned upscaler, vdm/post/sr.py) train on these clips:

  photo (scikit-image's bundled photos) -> Gaussian optics blur (sigma in frame pixels, scaled to
  photo pixels) -> camera path (pan velocity, slow zoom and roll, hand-held jitter: sums of
  sinusoids) -> bicubic sampling at each frame's pixel grid -> optional sensor noise -> uint8.

Train and test use different photos, so test clips show unseen content. Pure numpy/scipy,
deterministic from (seed, split, index).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy import ndimage

from vdm.data import assets

SPLITS = ("train", "test")
# scikit-image photos bundled with the package (no download). The GIF clip the upscaler is
# evaluated on (`no_time_for_that_tiny.gif`) is not among them.
PHOTOS = {
    "train": ("astronaut", "coffee", "chelsea", "immunohistochemistry", "retina",
              "hubble_deep_field", "camera", "moon", "page", "clock", "cell", "text", "brick",
              "grass", "gravel"),
    "test": ("rocket", "coins"),
}
MAX_SPEED = 3.0  # pan speed bound, frame pixels per frame
JITTER = 0.6  # amplitude of hand-held shake, frame pixels
# Share of clips filmed from a tripod (no motion at all): real footage is often still, and a model
# that only saw moving clips amplifies the frame-to-frame noise of still regions into flicker.
TRIPOD_PROB = 0.3


def camera_path(rng: np.random.Generator, frames: int) -> dict:
  """A smooth hand-held camera path over `frames` frames (or, with probability TRIPOD_PROB, a
  still camera), in frame-pixel units.

  Returns 'shift' float64 [T, 2] (x, y) offset of the frame centre, 'zoom' [T] (multiplies the
  photo scale), 'roll' [T] radians.
  """
  t = np.arange(frames, dtype=np.float64)
  if rng.uniform() < TRIPOD_PROB:
    return dict(shift=np.zeros((frames, 2)), zoom=np.ones(frames),
                roll=np.full(frames, rng.uniform(-0.05, 0.05)))
  speed = rng.uniform(0.0, MAX_SPEED) * np.sqrt(rng.uniform())  # many slow pans, some fast
  heading = rng.uniform(0, 2 * np.pi)
  shift = speed * t[:, None] * np.array([np.cos(heading), np.sin(heading)])
  for _ in range(2):  # two sinusoids per axis: shake that is smooth from frame to frame
    period = rng.uniform(4.0, 16.0, size=2)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    shift += rng.uniform(0, JITTER) * np.sin(2 * np.pi * t[:, None] / period + phase)
  zoom = np.exp(rng.uniform(-0.015, 0.015) * t)
  roll = rng.uniform(-0.05, 0.05) + rng.uniform(-0.004, 0.004) * t
  return dict(shift=shift, zoom=zoom, roll=roll)


def render(photo: np.ndarray, height: int, width: int, *, scale: float, center: np.ndarray,
           path: dict, blur: float) -> np.ndarray:
  """Frames float32 [T, height, width, 3] in photo units (0..255).

  photo uint8 [Hp, Wp, 3]; scale: photo pixels per frame pixel at zoom 1 (>= 1: the camera sees
  the photo at or below its own resolution); center float [2] (x, y) in photo pixels; blur:
  optics sigma in frame pixels (applied in photo pixels, so it is the same at every scale).
  """
  # The prefilter also band-limits the photo to the frame grid (sigma ~ 0.5 photo px per frame
  # px of minification), so sampling does not alias.
  sigma = scale * np.hypot(blur, 0.5 * np.sqrt(max(1.0 - 1.0 / scale ** 2, 0.0)))
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
  xs, ys = xs - (width - 1) / 2, ys - (height - 1) / 2
  coords = []
  for shift, zoom, roll in zip(path["shift"], path["zoom"], path["roll"]):
    c, s = np.cos(roll), np.sin(roll)
    coords.append((center[1] + scale / zoom * (s * (xs + shift[0]) + c * (ys + shift[1])),
                   center[0] + scale / zoom * (c * (xs + shift[0]) - s * (ys + shift[1]))))
  # Filter only the part of the photo the camera sees (plus the filter's reach): the cost.
  coords = np.asarray(coords)  # [T, 2 (y, x), H, W]
  pad = int(np.ceil(4 * sigma)) + 3
  lo = np.maximum(np.floor(coords.min(axis=(0, 2, 3))).astype(int) - pad, 0)
  hi = np.minimum(np.ceil(coords.max(axis=(0, 2, 3))).astype(int) + pad + 1, photo.shape[:2])
  crop = photo[lo[0]:hi[0], lo[1]:hi[1]].astype(np.float32)
  smooth = ndimage.gaussian_filter(crop, (sigma, sigma, 0), mode="reflect")
  coords = coords - lo[None, :, None, None]
  out = np.empty((len(coords), height, width, 3), np.float32)
  for i, (py, px) in enumerate(coords):
    for ch in range(3):
      out[i, ..., ch] = ndimage.map_coordinates(smooth[..., ch], (py, px), order=3,
                                                mode="reflect")
  return out


def view_extent(path: dict, height: int, width: int) -> float:
  """Largest distance (frame pixels at zoom 1) from the photo centre point any pixel reaches."""
  radius = 0.5 * np.hypot(height, width)
  return float(np.max((np.linalg.norm(path["shift"], axis=1) + radius) / path["zoom"]))


def make_example(seed: int, split: str, index: int, *, height: int = 64, width: int = 64,
                 frames: int = 8) -> dict:
  """'video' uint8 [T, height, width, 3], 'caption' str, 'photo' int32 (index into
  PHOTOS[split]), 'scale' float32, 'shift' float32 [T, 2], 'zoom' [T], 'roll' [T]."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  rng = np.random.default_rng([seed, 4000 + SPLITS.index(split), index])
  which = int(rng.integers(len(PHOTOS[split])))
  name = PHOTOS[split][which]
  photo = assets.photo(name)
  ph, pw = photo.shape[:2]
  path = camera_path(rng, frames)
  extent = view_extent(path, height, width)
  # The widest view that keeps the whole path inside the photo, then a random zoom-in from it.
  max_scale = max(1.0, 0.5 * min(ph, pw) / extent)
  scale = float(np.exp(rng.uniform(0.0, np.log(max_scale))))
  margin = np.array([pw, ph]) / 2 - scale * extent
  center = np.array([pw, ph]) / 2 + rng.uniform(-1, 1, size=2) * np.maximum(margin, 0.0)
  frames_f = render(photo, height, width, scale=scale, center=center, path=path,
                    blur=float(rng.uniform(0.3, 0.7)))
  if rng.uniform() < 0.5:  # sensor noise, fresh every frame
    frames_f += rng.normal(0.0, rng.uniform(0.5, 2.0), size=frames_f.shape)
  video = np.clip(np.round(frames_f), 0, 255).astype(np.uint8)
  return dict(video=video, caption=f"a hand-held camera filming the {name} photo",
              photo=np.int32(which), scale=np.float32(scale),
              shift=path["shift"].astype(np.float32), zoom=path["zoom"].astype(np.float32),
              roll=path["roll"].astype(np.float32))


def generate_examples(seed: int, split: str, num: int, **kwargs) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num); see make_example."""
  for i in range(num):
    yield i, make_example(seed, split, i, **kwargs)
