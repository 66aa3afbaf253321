"""Classifier-free guidance, guidance rescale and a guidance interval, as pure functions.

`v_uncond` is always the prediction for the negative prompt (the empty prompt when none is given),
so guidance pushes away from it. Velocities are flow velocities [B, T, ...] with per-frame levels
t [B, T] (`vdm.diffusion.flow` conventions).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vdm.diffusion.flow import broadcast_levels

RESCALE_SPACES = ("velocity", "x0")


def in_interval(t: jax.Array, interval: tuple[float, float] | None) -> jax.Array:
  """Bool, same shape as t: whether guidance applies at level t (lo <= t <= hi).

  Kynkaanniemi et al. 2024: guidance at the highest levels collapses diversity and at the lowest
  does little, so applying it only in a middle interval is both better and cheaper.
  None means everywhere.
  """
  if interval is None:
    return jnp.ones(jnp.shape(t), bool)
  lo, hi = interval
  return (t >= lo) & (t <= hi)


def rescale_guidance(guided: jax.Array, cond: jax.Array, phi: float | jax.Array, *,
            axes: tuple[int, ...] | None = None) -> jax.Array:
  """Guidance rescale (Lin et al. 2023, eq. 15-16): match the guided prediction's std to the
  conditional one, then mix with weight phi (0: plain CFG, 1: fully rescaled).

  High guidance scales inflate the prediction's std, which over-exposes and over-saturates.
  The std is taken over `axes`, by default every axis after [B, T], i.e. per frame, because
  frames of one clip can sit at different levels.
  """
  if axes is None:
    axes = tuple(range(2, guided.ndim))
  std_cond = jnp.std(cond, axis=axes, keepdims=True)
  std_guided = jnp.std(guided, axis=axes, keepdims=True)
  # A constant frame (std 0) has nothing to rescale; leave it rather than divide by zero.
  ratio = jnp.where(std_guided > 0, std_cond / jnp.where(std_guided > 0, std_guided, 1.0), 1.0)
  rescaled = guided * ratio
  return phi * rescaled + (1.0 - phi) * guided


def guide(v_cond: jax.Array, v_uncond: jax.Array, *, scale, rescale: float = 0.0,
          interval: tuple[float, float] | None = None, x: jax.Array | None = None,
          t: jax.Array | None = None, space: str = "velocity") -> jax.Array:
  """Guided velocity [B, T, ...] from conditional and negative-prompt velocities.

  scale: classifier-free guidance, v_uncond + scale (v_cond - v_uncond): 1 is the conditional
  model, and the negative prompt is pushed away from. rescale: guidance rescale weight phi.
  interval (lo, hi): frames whose level t is outside it use the conditional prediction (scale 1);
  needs t [B, T].
  space: where rescale measures the std, 'velocity' (what a v-model outputs, as diffusers does for
  its prediction) or 'x0' (the paper's choice for a v-model; x0 = x - t v, needs x and t; frames
  at t = 0 keep the velocity-space result).
  """
  if space not in RESCALE_SPACES:
    raise ValueError(f"guidance rescale space must be one of {RESCALE_SPACES}, got {space!r}")
  if interval is not None and t is None:
    raise ValueError("a guidance interval needs the levels t [B, T]")
  v = v_uncond + scale * (v_cond - v_uncond)
  if not (isinstance(rescale, (int, float)) and rescale == 0):
    if space == "velocity":
      v = rescale_guidance(v, v_cond, rescale)
    else:
      if x is None or t is None:
        raise ValueError("guidance rescale in 'x0' space needs x and t")
      tb = broadcast_levels(t, x)
      x0 = rescale_guidance(x - tb * v, x - tb * v_cond, rescale)
      v = jnp.where(tb > 0, (x - x0) / jnp.where(tb > 0, tb, 1.0), v)
  if interval is None:
    return v
  # Outside the interval: exactly the conditional prediction (scale 1).
  return jnp.where(broadcast_levels(in_interval(t, interval), v_cond), v, v_cond)


def guided_velocity_fn(cond_fn, uncond_fn, *, scale, rescale: float = 0.0,
                       interval: tuple[float, float] | None = None, space: str = "velocity"):
  """One `velocity_fn(x, t)` for the samplers from conditional and negative-prompt velocity fns.

  With an interval, the negative-prompt call is skipped (lax.cond) in steps where no frame is
  inside it, which is where the interval saves compute. A pipeline that batches both prompts
  into one network call should call `guide` on the two halves instead.
  """
  def velocity(x, t):
    v_cond = cond_fn(x, t)

    def with_guidance(_):
      return guide(v_cond, uncond_fn(x, t), scale=scale, rescale=rescale,
                   interval=interval, x=x, t=t, space=space)

    if interval is None:
      return with_guidance(None)
    return jax.lax.cond(jnp.any(in_interval(t, interval)), with_guidance, lambda _: v_cond, None)

  return velocity
