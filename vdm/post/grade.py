"""Colour grading: exposure, white balance, contrast, saturation, gamma, then a 3D LUT.

Exposure and white balance are gains, so they act on linear light (sRGB decoded); contrast,
saturation and gamma are perceptual and act on the encoded values, as in grading tools. The LUT
comes last because .cube files are authored for display-encoded input. Values are clipped to
[0, 1] after every step that can leave it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common
from vdm.post.lut import INTERPOLATIONS, Lut, apply_lut, read_cube


def validate(exposure=0.0, temperature=0.0, tint=0.0, contrast=1.0, saturation=1.0,
             gamma=1.0, lut=None, lut_interp="trilinear", lut_strength=1.0) -> dict:
  """Checks grade arguments; loads a LUT given as a path. Returns them normalised."""
  c = functools.partial(common.check_number, "grade")
  if lut is not None and not isinstance(lut, Lut):
    if not isinstance(lut, str):
      raise ValueError(f"grade: lut must be a .cube path or a Lut, got {lut!r}")
    lut = read_cube(lut)
  return dict(exposure=c("exposure", exposure, -8, 8), temperature=c("temperature", temperature, -1, 1),
              tint=c("tint", tint, -1, 1), contrast=c("contrast", contrast, 0, 4),
              saturation=c("saturation", saturation, 0, 4), gamma=c("gamma", gamma, 0.1, 10),
              lut=lut, lut_interp=common.check_choice("grade", "lut_interp", lut_interp, INTERPOLATIONS),
              lut_strength=c("lut_strength", lut_strength, 0, 1))


def srgb_to_linear(x):
  return jnp.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
  return jnp.where(x <= 0.0031308, 12.92 * x, 1.055 * jnp.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055)


def white_balance_gains(temperature, tint):
  """RGB gains [3]: temperature > 0 warms (red up, blue down), tint > 0 greens.

  Normalised to unit luma so white balance moves hue, not brightness.
  """
  gains = jnp.stack([1 + 0.3 * temperature, 1 + 0.3 * tint, 1 - 0.3 * temperature])
  return gains / jnp.dot(gains, jnp.asarray(common.LUMA))


@functools.partial(jax.jit, static_argnames=("interp", "use_lut"))
def _grade(x, exposure, temperature, tint, contrast, saturation, gamma, table, dmin, dmax,
           lut_strength, interp, use_lut):
  lin = srgb_to_linear(x) * (2.0 ** exposure) * white_balance_gains(temperature, tint)
  x = linear_to_srgb(jnp.clip(lin, 0.0, 1.0))
  x = jnp.clip((x - 0.5) * contrast + 0.5, 0.0, 1.0)
  luma = (x * jnp.asarray(common.LUMA)).sum(-1, keepdims=True)
  x = jnp.clip(luma + saturation * (x - luma), 0.0, 1.0)
  x = x ** (1.0 / gamma)
  if use_lut:
    x = x + lut_strength * (apply_lut(x, table, dmin, dmax, interp) - x)
  return jnp.clip(x, 0.0, 1.0)


def grade(frames, exposure: float = 0.0, temperature: float = 0.0, tint: float = 0.0,
          contrast: float = 1.0, saturation: float = 1.0, gamma: float = 1.0,
          lut: str | Lut | None = None, lut_interp: str = "trilinear",
          lut_strength: float = 1.0, *, chunk: int = common.DEFAULT_CHUNK):
  """Grades frames [T, H, W, 3] (uint8 or float in [0, 1]); returns the same shape and dtype.

  exposure: stops in [-8, 8]; temperature, tint: [-1, 1]; contrast (pivot 0.5), saturation:
  [0, 4], 1 = unchanged; gamma: [0.1, 10], out = in ** (1 / gamma); lut: a .cube path or Lut;
  lut_interp: 'trilinear' | 'tetrahedral'; lut_strength: [0, 1] mix of the LUT's output.
  """
  p = validate(exposure, temperature, tint, contrast, saturation, gamma, lut, lut_interp,
               lut_strength)
  frames = common.check_frames(frames, "grade")
  chunk = common.check_chunk(chunk)
  lut = p["lut"]
  table = jnp.asarray(lut.table) if lut else jnp.zeros((2, 2, 2, 3))
  dmin = jnp.asarray(lut.domain_min) if lut else jnp.zeros(3)
  dmax = jnp.asarray(lut.domain_max) if lut else jnp.ones(3)
  fn = functools.partial(
      _grade, exposure=p["exposure"], temperature=p["temperature"], tint=p["tint"],
      contrast=p["contrast"], saturation=p["saturation"], gamma=p["gamma"], table=table,
      dmin=dmin, dmax=dmax, lut_strength=p["lut_strength"], interp=p["lut_interp"],
      use_lut=lut is not None)
  return common.map_chunks(fn, frames, chunk)
