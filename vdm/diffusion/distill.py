"""Few-step distillation objectives as pure functions of velocity functions and arrays.

Flow convention of `vdm.diffusion.flow` (t = 0 data, t = 1 noise, x_t = (1 - t) x0 + t eps,
v = eps - x0, so x0 = x_t - t v). Each recipe teaches a student velocity model something the
teacher only reaches with many (or guided) steps:

  * guidance distillation (Meng et al. 2023): the student, given the scale w as an input,
    regresses the teacher's classifier-free guided velocity, one forward instead of two;
  * shortcut (Frans et al. 2024): the student, given the step size d, predicts the average
    velocity over the step; at d = 0 it is the teacher's velocity, and a step of 2d is taught
    the average of two of its own steps of d (self-consistency), so 1-4 Euler steps of the
    student follow the teacher's ODE;
  * ODE pairs (Self-Forcing's `ode_init`, after Luhman & Luhman 2021): the student regresses the
    clean end of the teacher's ODE trajectory from the trajectory's points at its few levels;
  * distribution matching (DMD, Yin et al. 2024; DMD2): a few-step generator moves its samples
    along the difference of a frozen real score (the teacher) and a fake score trained on the
    generator's own samples, which is the gradient of their KL divergence.

A velocity function is `fn(x [B, T, ...], t [B, T]) -> v` (a student's also takes `step`
[B, T]). The closed forms on Gaussian data are in tests/test_distill.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vdm.diffusion.flow import broadcast_levels, flow_matching_loss, interpolate
from vdm.diffusion.samplers import euler


def x0_of(x: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
  """The clean estimate x0 = x - t v of a velocity v at x [B, T, ...], levels t [B, T]."""
  return x - broadcast_levels(t, x) * v


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(a - b))


# ----------------------------------------------------------------------------- guidance

def guidance_distillation_loss(student, guided, x: jax.Array, t: jax.Array,
                               scale: jax.Array) -> jax.Array:
  """Mean squared error of student(x, t, scale) against the teacher's classifier-free guided
  velocity guided(x, t, scale) (`guide` of its prompt and negative-prompt velocities) at the
  same x [B, T, ...], t [B, T]; scale [B]."""
  return mse(student(x, t, scale), jax.lax.stop_gradient(guided(x, t, scale)))


# ----------------------------------------------------------------------------- shortcut

def shortcut_base_loss(student, teacher, x: jax.Array, t: jax.Array) -> jax.Array:
  """The shortcut student told step 0 regresses the teacher's (guided) velocity at x [B, T, ...],
  levels t [B, T]: student(x, t, step) -> v, teacher(x, t) -> v."""
  return mse(student(x, t, jnp.zeros_like(t)), jax.lax.stop_gradient(teacher(x, t)))


def shortcut_self_loss(student, x: jax.Array, t: jax.Array, d: jax.Array) -> jax.Array:
  """Self-consistency of a shortcut student (student(x, t, step) -> the average velocity over a
  step of size `step`): its step of d [B, T] (d <= t) regresses the mean of two of its own
  (stop-gradient) steps of d / 2, the second taken from where the first lands. A frame with
  d = 0 (context) is taught its instantaneous velocity there, as in the base loss."""
  half = 0.5 * d
  v1 = jax.lax.stop_gradient(student(x, t, half))
  x_mid = x - broadcast_levels(half, x) * v1
  v2 = jax.lax.stop_gradient(student(x_mid, t - half, half))
  return mse(student(x, t, d), 0.5 * (v1 + v2))


# ----------------------------------------------------------------------------- ODE pairs

def ode_trajectory(velocity_fn, noise: jax.Array, grid, record_every: int) -> jax.Array:
  """Euler along `grid` [S + 1] (descending to 0, shared by every frame) from `noise` [B, T, ...]
  (level grid[0] = 1), recording x at every `record_every`-th level and at the end.

  Returns [S / record_every + 1, B, T, ...]: x at grid[0], grid[k], grid[2k], ..., grid[S] (the
  last is the ODE's clean sample). With grid = the teacher's grid and k = S / K, the recorded
  levels are a K-step student's schedule.
  """
  grid = jnp.asarray(grid, jnp.float32)
  steps = grid.shape[0] - 1
  if steps % record_every:
    raise ValueError(f"the grid's {steps} steps must be a multiple of record_every="
                     f"{record_every}")
  frames = noise.shape[1]
  points = [noise]
  x = noise
  for start in range(0, steps, record_every):
    segment = jnp.repeat(grid[start:start + record_every + 1, None], frames, axis=1)
    x = euler(velocity_fn, x, segment)
    points.append(x)
  return jnp.stack(points)


def ode_regression_loss(v: jax.Array, x: jax.Array, t: jax.Array, x0: jax.Array,
                        frame_weights: jax.Array | None = None) -> jax.Array:
  """Mean squared error of the student's clean estimate x - t v against the ODE's clean end x0
  (arrays [B, T, ...], levels t [B, T]); frame_weights [B, T] score some frames only."""
  error = jnp.square(x0_of(x, v, t) - x0)
  if frame_weights is None:
    return jnp.mean(error)
  per_frame = error.reshape(error.shape[:2] + (-1,)).mean(-1)
  return (per_frame * frame_weights).sum() / jnp.maximum(frame_weights.sum(), 1e-8)


# ----------------------------------------------------------------------------- DMD

def dmd_direction(x0_gen: jax.Array, x0_real: jax.Array, x0_fake: jax.Array) -> jax.Array:
  """The DMD update direction for generated clean samples x0_gen [B, ...]: the fake score's
  clean estimate minus the real score's (both at the same noised x_t; proportional to
  s_fake - s_real, the gradient of KL(p_fake || p_real) w.r.t. x_t), divided per sample by
  mean |x0_gen - x0_real| (DMD's normaliser: the step is scale-free across levels)."""
  axes = tuple(range(1, x0_gen.ndim))
  scale = jnp.mean(jnp.abs(x0_gen - x0_real), axis=axes, keepdims=True)
  return (x0_fake - x0_real) / jnp.maximum(scale, 1e-6)


def dmd_loss(x0_gen: jax.Array, x0_real: jax.Array, x0_fake: jax.Array) -> jax.Array:
  """0.5 mean (x0_gen - sg(x0_gen - direction))^2: a loss whose gradient w.r.t. x0_gen is the
  DMD direction / N, so back-propagating it moves the generator along the direction."""
  direction = jax.lax.stop_gradient(dmd_direction(x0_gen, x0_real, x0_fake))
  target = jax.lax.stop_gradient(x0_gen - direction)
  return 0.5 * mse(x0_gen, target)


def dmd_scores(real, fake, x0_gen: jax.Array, noise: jax.Array, t: jax.Array):
  """(x0_real, x0_fake): both scores' clean estimates at x_t = (1 - t) x0_gen + t noise.

  real(x, t) -> v: the frozen teacher (guided); fake(x, t) -> v: the fake score. Both see x_t
  with x0_gen stopped (only the DMD direction, not the scores, carries gradient)."""
  x_t = jax.lax.stop_gradient(interpolate(x0_gen, noise, t))
  return (jax.lax.stop_gradient(x0_of(x_t, real(x_t, t), t)),
          jax.lax.stop_gradient(x0_of(x_t, fake(x_t, t), t)))


def fake_score_loss(fake, x0_gen: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """Flow matching of the fake score on the generator's samples (stopped): it learns the
  velocity of the distribution the generator currently makes."""
  x0_gen = jax.lax.stop_gradient(x0_gen)
  return flow_matching_loss(fake(interpolate(x0_gen, noise, t), t), x0_gen, noise)


# ----------------------------------------------------------------------------- few-step rollout

def renoise_to(x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """The next input of a few-step student: its clean estimate re-noised to level t [B, T]
  (`vdm.diffusion.samplers.consistency`'s step)."""
  return interpolate(x0, noise, t)
