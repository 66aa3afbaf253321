"""Classical upscaling: bicubic and Lanczos resampling (jax.image.resize) per frame.

These are the baselines a learned super-resolution model has to beat.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common

# User-facing name -> jax.image.resize method. 'bicubic' is the Keys kernel with a = -0.5.
METHODS = {"bicubic": "cubic", "lanczos": "lanczos3", "lanczos3": "lanczos3",
           "lanczos5": "lanczos5", "bilinear": "linear"}
MAX_FACTOR = 8


def validate(factor=2, method="bicubic") -> dict:
  """Checks upscale arguments; returns them normalised."""
  return dict(factor=common.check_number("upscale", "factor", factor, 1, MAX_FACTOR),
              method=common.check_choice("upscale", "method", method, METHODS))


@functools.partial(jax.jit, static_argnames=("height", "width", "method"))
def _resize(x: jax.Array, height: int, width: int, method: str) -> jax.Array:
  out = jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), method=method,
                         antialias=False)
  # Cubic and Lanczos kernels have negative lobes: overshoot past [0, 1] at edges is clipped.
  return jnp.clip(out, 0.0, 1.0)


def upscale(frames, factor: float = 2, method: str = "bicubic", *,
            chunk: int = common.DEFAULT_CHUNK):
  """Resizes frames [T, H, W, 3] to [T, round(H * factor), round(W * factor), 3].

  frames: uint8 or float in [0, 1]; the output has the input's dtype. method: 'bicubic',
  'lanczos' (= 'lanczos3'), 'lanczos5' or 'bilinear'.
  """
  p = validate(factor, method)
  frames = common.check_frames(frames, "upscale")
  chunk = common.check_chunk(chunk)
  _, h, w, _ = frames.shape
  height, width = int(round(h * p["factor"])), int(round(w * p["factor"]))
  fn = functools.partial(_resize, height=height, width=width, method=METHODS[p["method"]])
  return common.map_chunks(fn, frames, chunk)
