"""Rectified flow matching as pure functions of arrays.

Convention (the one SD3/Wan use): t = 0 is clean data, t = 1 is pure noise,

    x_t = (1 - t) * x0 + t * noise,        velocity v = dx_t/dt = noise - x0.

The denoiser predicts v. Every frame carries its own level, so `t` is [B, T] and broadcasts over
the trailing [h, w, c] axes of a latent video [B, T, h, w, c]. Training levels are drawn by
`vdm.diffusion.objectives.sample_timesteps`, the flow is integrated by `vdm.diffusion.samplers`
and guided by `vdm.diffusion.guidance`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def broadcast_levels(t: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes per-frame levels t [B, T] (or [B]) so they broadcast against x [B, T, ...]."""
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """x_t = (1 - t) x0 + t noise.  x0, noise: [B, T, ...]; t: [B, T]. Returns [B, T, ...]."""
  tb = broadcast_levels(t, x0)
  return (1.0 - tb) * x0 + tb * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
  """The flow-matching regression target v = noise - x0, same shape as x0."""
  return noise - x0


def flow_matching_loss(predicted_velocity: jax.Array, x0: jax.Array, noise: jax.Array,
                       frame_weights: jax.Array | None = None) -> jax.Array:
  """Mean squared error between predicted and true velocity; returns a scalar.

  Arrays [B, T, ...]; frame_weights [B, T] (optional) weight each frame's error, and the mean is
  taken over the weighted frames (teacher forcing scores only the frames being generated).
  """
  error = jnp.square(predicted_velocity - velocity_target(x0, noise))
  if frame_weights is None:
    return jnp.mean(error)
  per_frame = error.reshape(error.shape[:2] + (-1,)).mean(-1)
  return (per_frame * frame_weights).sum() / jnp.maximum(frame_weights.sum(), 1e-8)


def warp_previous(x: jax.Array, flow: jax.Array) -> jax.Array:
  """Brings frames 0..T-2 of x [B, T, h, w, C] onto the grids of frames 1..T-1 along a backward
  flow [B, T-1, h, w, 2] (dx, dy in cells: the content at cell p of frame t+1 was at p - flow in
  frame t), by bilinear sampling with edge clamping. Returns [B, T-1, h, w, C]."""
  h, w = x.shape[2:4]
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype),
                            indexing="ij")

  def one(frame, f):  # frame [h, w, C], f [h, w, 2]
    coords = (rows - f[..., 1], cols - f[..., 0])
    return jax.vmap(lambda c: jax.scipy.ndimage.map_coordinates(c, coords, order=1,
                                                                mode="nearest"),
                    in_axes=-1, out_axes=-1)(frame)

  return jax.vmap(jax.vmap(one))(x[:, :-1], flow)


def temporal_consistency_loss(predicted_velocity: jax.Array, x_t: jax.Array, levels: jax.Array,
                              x0: jax.Array, flow: jax.Array | None = None,
                              valid: jax.Array | None = None) -> jax.Array:
  """Mean squared error of the predicted clean clip's frame-to-frame change against the true one.

  x0_hat = x_t - t v (the flow's clean-sample estimate); compares x0_hat[t+1] - x0_hat[t] with
  x0[t+1] - x0[t]. Arrays [B, T, h, w, C], levels [B, T]; a scalar (0 for T = 1). A training aid
  for temporal consistency: it weights errors in motion and flicker beyond per-frame error.

  Motion supervision: with the exact backward `flow` [B, T-1, h, w, 2] (see `warp_previous`) the
  change is taken along the motion, x0_hat[t+1] - warp(x0_hat[t]), and only where `valid`
  [B, T-1, h, w] (cells not disoccluded): the error must travel with the object, so wrong motion
  is penalised while right motion is not (with flow = 0 it is the plain frame difference).
  """
  if x0.shape[1] < 2:
    return jnp.zeros((), x0.dtype)
  x0_hat = x_t - broadcast_levels(levels, x_t) * predicted_velocity
  if flow is None:
    change = lambda x: x[:, 1:] - x[:, :-1]  # noqa: E731
  else:
    change = lambda x: x[:, 1:] - warp_previous(x, flow)  # noqa: E731
  error = jnp.square(change(x0_hat) - change(x0))
  if valid is None:
    return jnp.mean(error)
  weight = valid.astype(error.dtype)[..., None]
  return jnp.sum(error * weight) / jnp.maximum(jnp.sum(weight) * error.shape[-1], 1.0)
