"""Blind temporal consistency: a frame-by-frame result made as steady as a reference clip.

A per-frame operator (the learned upscaler, a sharpening filter) adds frame-to-frame change that
its input does not have: it sharpens the input's small per-frame noise (sensor, 8-bit
quantisation) a little differently in every frame. Where the reference (for the upscaler: the
bicubic upscale of the same input) does not change, the output should not change more than the
reference does. The recursion

    w_t = strength * exp(-(max_c |B_t - B_{t-1}| / tolerance)^2)          per pixel
    O_0 = P_0,    O_t = (1 - w_t) * P_t + w_t * (O_{t-1} + B_t - B_{t-1})

(P the per-frame result, B the reference, O the output) makes O's frame-to-frame change equal B's
wherever w = 1, and leaves pixels that move (B changes by several tolerances) to P. It is the
recursion of Bonneel et al. 2015, "Blind video temporal consistency", without the optical flow:
O_{t-1} is not warped, so only still pixels take it. Any change of B lowers w, so the detail
layer O - B is refreshed from P as soon as a pixel moves; strength < 1 also relaxes it towards P's
where nothing changes, with a time constant of about 1 / (1 - strength) frames.

smooth > 0 runs the recursion on the reference blurred by a Gaussian of that sigma (pixels):
B is replaced by blur(B) in both the weight and the followed change. On real footage the
reference's own finest frame-to-frame change on a still surface is the input's noise and codec
flicker (sensor noise, JPEG blocks re-quantised differently each frame), not content: unblurred,
it lowers w (so the per-frame result's flicker shows) and, where w stays high, it is copied into
the output. Blurred, a still surface counts as still and its output keeps its detail, while an
edge or texture that moves changes blur(B) by many tolerances and is left to P.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vdm.post import common

# The reference's blur, compiled once per (frame shape, sigma) rather than on every call.
_blur = jax.jit(common.gaussian_blur, static_argnames=("sigma",))


def validate(strength=1.0, tolerance=0.015, smooth=0.0) -> dict:
  """Checks steady arguments (tolerance in [0, 1] units: 0.015 ~ 4 levels of 255; smooth: the
  reference's blur sigma in pixels, 0 = none)."""
  c = functools.partial(common.check_number, "steady")
  return dict(strength=c("strength", strength, 0, 1), tolerance=c("tolerance", tolerance, 1e-4, 1),
              smooth=c("smooth", smooth, 0, 10))


@jax.jit
def _follow(pred, ref, prev_out, prev_ref, strength, tolerance):
  """pred, ref [C, H, W, 3]; prev_out, prev_ref [H, W, 3] (the frame before the chunk) ->
  output [C, H, W, 3]."""

  def step(carry, frame):
    out_prev, ref_prev = carry
    p, b = frame
    change = b - ref_prev
    w = strength * jnp.exp(-jnp.square(jnp.abs(change).max(-1, keepdims=True) / tolerance))
    out = jnp.clip((1.0 - w) * p + w * (out_prev + change), 0.0, 1.0)
    return (out, b), out

  _, out = jax.lax.scan(step, (prev_out, prev_ref), (pred, ref))
  return out


def follow_reference(pred, ref, strength: float = 1.0, tolerance: float = 0.015,
                     smooth: float = 0.0, *, chunk: int = common.DEFAULT_CHUNK) -> np.ndarray:
  """Steadies pred [T, H, W, 3] along ref [T, H, W, 3] (same shape; uint8 or float in [0, 1]);
  returns pred's dtype. The running output is carried in float32 from chunk to chunk, so the
  result does not depend on the chunk size and 8-bit rounding does not accumulate."""
  p = validate(strength, tolerance, smooth)
  pred = common.check_frames(pred, "steady")
  ref = common.check_frames(ref, "steady")
  if pred.shape != ref.shape:
    raise ValueError(f"steady: result {pred.shape} and reference {ref.shape} differ in shape")
  chunk = common.check_chunk(chunk)
  if p["strength"] == 0:
    return pred
  def reference(frames):  # uint8 or float [C, H, W, 3] -> the float reference followed
    frames = jnp.asarray(common.to_float(frames))
    return _blur(frames, sigma=p["smooth"]) if p["smooth"] > 0 else frames

  # Frame 0 is taken as it is: out_{-1} = P_0 and ref_{-1} = B_0 give O_0 = P_0 for any w.
  prev_out = jnp.asarray(common.to_float(pred[0]))
  prev_ref = reference(ref[:1])[0]
  outs = []
  for start in range(0, pred.shape[0], chunk):
    ref_chunk = reference(ref[start:start + chunk])
    out = _follow(jnp.asarray(common.to_float(pred[start:start + chunk])), ref_chunk, prev_out,
                  prev_ref, p["strength"], p["tolerance"])
    prev_out, prev_ref = out[-1], ref_chunk[-1]
    outs.append(common.like(np.asarray(out), pred))
  return np.concatenate(outs, axis=0)
