"""Sharpening: unsharp mask on luma, gated by a threshold on the local detail energy.

detail = luma - gaussian_blur(luma), added back `amount` times. The threshold is applied to the
detail's local mean magnitude (blurred |detail|), not to each pixel: noise and grain in a flat
region have a low local energy and are left exactly as they are, while at an edge the whole
profile is boosted, including its centre, where the detail itself crosses zero (a per-pixel
threshold would leave the steepest part of the edge unsharpened). The gate ramps from 0 at
`threshold` to 1 at twice it, so it has no visible switch-on line. Working on luma only keeps
the sharpening from adding colour fringes or amplifying chroma noise.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vdm.post import common


def validate(amount=0.5, radius=1.0, threshold=0.02) -> dict:
  """Checks sharpen arguments; returns them normalised."""
  c = functools.partial(common.check_number, "sharpen")
  return dict(amount=c("amount", amount, 0, 5), radius=c("radius", radius, 0.3, 10),
              threshold=c("threshold", threshold, 0, 1))


@functools.partial(jax.jit, static_argnames=("radius",))
def _sharpen(x, amount, threshold, radius):
  luma = (x * jnp.asarray(common.LUMA)).sum(-1, keepdims=True)
  detail = luma - common.gaussian_blur(luma, radius)
  energy = common.gaussian_blur(jnp.abs(detail), radius)
  gate = jnp.clip((energy - threshold) / jnp.maximum(threshold, 1e-6), 0.0, 1.0)
  return jnp.clip(x + amount * gate * detail, 0.0, 1.0)


def sharpen(frames, amount: float = 0.5, radius: float = 1.0, threshold: float = 0.02, *,
            chunk: int = common.DEFAULT_CHUNK):
  """Sharpens frames [T, H, W, 3] (uint8 or float in [0, 1]); returns the same shape and dtype.

  amount: [0, 5], gain on the detail; radius: Gaussian sigma in pixels, [0.3, 10]; threshold:
  [0, 1] in units of the [0, 1] range; where the local mean |detail| is at or below it (flat
  regions, noise) nothing changes at all.
  """
  p = validate(amount, radius, threshold)
  frames = common.check_frames(frames, "sharpen")
  fn = functools.partial(_sharpen, amount=p["amount"], threshold=p["threshold"],
                         radius=p["radius"])
  return common.map_chunks(fn, frames, common.check_chunk(chunk))
