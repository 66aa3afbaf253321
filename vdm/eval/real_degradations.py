"""Low-resolution inputs made the way real ones are, by standard tools (PIL and ffmpeg), not by vdm.

The upscale suite's held-out test: the learned upscaler trains on `vdm.post.degradations` (a JAX
re-implementation of resizers, blur, noise and JPEG), and is scored here on real clips degraded
by PIL's resizers, PIL's JPEG encoder and ffmpeg's H.264 encoder, so a model that learned the
quirks of vdm's own degradation code gains nothing from them.

    degrade_with(name, hr [T, H, W, 3] uint8, factor) -> lr [T, H/f, W/f, 3] uint8

`pil_bicubic` is the reference bicubic upscale vdm's own `upscale(f, method=bicubic)` is held to.
"""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from PIL import Image, ImageFilter

_PIL_FILTERS = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
                "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
NOISE_STD = 3.0  # 8-bit levels: a visible sensor noise, above the training range's mean
BLUR_RADIUS = 1.0  # PIL GaussianBlur radius (its sigma), in high-resolution pixels
JPEG_QUALITY = 40
H264_CRF = 28  # libx264's default is 23; 28 is the streaming-grade end


def _resize(frames: np.ndarray, size: tuple[int, int], kernel: str) -> np.ndarray:
  """PIL resize of every frame of uint8 [T, H, W, 3] to (width, height); PIL's downscaling
  stretches the kernel by the factor (antialiased), as most resizers do."""
  return np.stack([np.asarray(Image.fromarray(f).resize(size, _PIL_FILTERS[kernel]))
                   for f in frames])


def _down(hr: np.ndarray, factor: int, kernel: str = "bicubic") -> np.ndarray:
  return _resize(hr, (hr.shape[2] // factor, hr.shape[1] // factor), kernel)


def _blur(hr: np.ndarray, factor: int) -> np.ndarray:
  blurred = np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(
      BLUR_RADIUS))) for f in hr])
  return _down(blurred, factor)


def _noise(hr: np.ndarray, factor: int) -> np.ndarray:
  lr = _down(hr, factor).astype(np.float64)
  noise = np.random.default_rng(0).normal(0.0, NOISE_STD, lr.shape)
  return np.clip(np.round(lr + noise), 0, 255).astype(np.uint8)


def _jpeg(hr: np.ndarray, factor: int) -> np.ndarray:
  frames = []
  for f in _down(hr, factor):
    buffer = io.BytesIO()
    Image.fromarray(f).save(buffer, "JPEG", quality=JPEG_QUALITY)
    frames.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
  return np.stack(frames)


def _h264(hr: np.ndarray, factor: int) -> np.ndarray:
  """Area-averaged (what most resizers do), then through libx264 at H264_CRF, yuv420p."""
  import mediapy

  import vdm.video_io  # noqa: F401  (points mediapy at imageio-ffmpeg's binary)
  lr = _down(hr, factor, "area")
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "lr.mp4")
    mediapy.write_video(path, lr, fps=8, crf=H264_CRF)
    return np.asarray(mediapy.read_video(path))[:len(lr)]


# Name -> fn(hr uint8 [T, H, W, 3], factor) -> lr uint8 [T, H // factor, W // factor, 3].
DEGRADATIONS = {
    "area": lambda hr, f: _down(hr, f, "area"),
    "bilinear": lambda hr, f: _down(hr, f, "bilinear"),
    "bicubic": lambda hr, f: _down(hr, f, "bicubic"),
    "lanczos": lambda hr, f: _down(hr, f, "lanczos"),
    f"blur {BLUR_RADIUS:g} + bicubic": _blur,
    f"bicubic + noise {NOISE_STD:g}": _noise,
    f"bicubic + JPEG q{JPEG_QUALITY}": _jpeg,
    f"area + H.264 crf {H264_CRF}": _h264,
}


def degrade_with(name: str, hr: np.ndarray, factor: int) -> np.ndarray:
  """lr uint8 [T, H // factor, W // factor, 3] of hr uint8 [T, H, W, 3] (H, W multiples of
  2 * factor, so H.264's 4:2:0 chroma fits) by the degradation `name` of DEGRADATIONS."""
  if name not in DEGRADATIONS:
    raise ValueError(f"degradation {name!r}: allowed {list(DEGRADATIONS)}")
  return DEGRADATIONS[name](np.asarray(hr, np.uint8), factor)


def pil_bicubic(lr: np.ndarray, factor: int) -> np.ndarray:
  """PIL's bicubic upscale (Keys a = -0.5, as vdm's) of uint8 [T, h, w, 3] by factor."""
  return _resize(lr, (lr.shape[2] * factor, lr.shape[1] * factor), "bicubic")
