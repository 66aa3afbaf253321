"""Training objectives beside plain flow matching: VP (variance-preserving) eps- and v-prediction,
conversions between every parameterisation, shifted timestep sampling, and loss weightings.

Two coordinate systems, both with t = 0 data and t = 1 noise:
  rectified flow  x_t = (1 - t) x0 + t eps,          velocity u = eps - x0   (`vdm.diffusion.flow`)
  VP              z_t = alpha_t x0 + sigma_t eps,     alpha^2 + sigma^2 = 1
                  eps-prediction, or v = alpha eps - sigma x0 (Salimans & Ho 2022).
They are the same family up to a rescaling: z_t / (alpha + sigma) is the flow point at level
s = sigma / (alpha + sigma). `vp_as_flow_velocity` uses that to run a VP denoiser through the flow
samplers unchanged. Arrays are [B, T, ...] with per-frame levels t [B, T] (or anything that
broadcasts after `broadcast_levels`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vdm.diffusion.flow import broadcast_levels

VP_SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("eps", "v", "x0", "flow")
LOSS_WEIGHTINGS = ("uniform", "min_snr", "soft_min_snr")
# The continuous-time DDPM "linear" schedule (Song et al. 2021, VP SDE): beta(t) from 0.1 to 20.
_BETA_MIN, _BETA_MAX = 0.1, 20.0


# ----------------------------------------------------------------------------- VP schedules

def vp_alpha_sigma(t: jax.Array, schedule: str = "cosine") -> tuple[jax.Array, jax.Array]:
  """(alpha_t, sigma_t), alpha^2 + sigma^2 = 1, for levels t in [0, 1] (any shape).

  'cosine': alpha = cos(pi t / 2), reaching exactly zero SNR at t = 1 (Lin et al. 2023 argue the
  top level must be pure noise). 'linear': alpha^2 = exp(-(b0 t + (b1 - b0) t^2 / 2)), the
  continuous DDPM schedule (b0 = 0.1, b1 = 20), whose top level keeps a little signal.
  """
  if schedule == "cosine":
    return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)
  if schedule == "linear":
    log_alpha2 = -(_BETA_MIN * t + 0.5 * (_BETA_MAX - _BETA_MIN) * t ** 2)
    return jnp.exp(0.5 * log_alpha2), jnp.sqrt(-jnp.expm1(log_alpha2))
  raise ValueError(f"VP schedule must be one of {VP_SCHEDULES}, got {schedule!r}")


def vp_log_snr(t: jax.Array, schedule: str = "cosine") -> jax.Array:
  """log(alpha^2 / sigma^2) of the VP schedule; +inf at t = 0."""
  alpha, sigma = vp_alpha_sigma(t, schedule)
  return 2.0 * (jnp.log(alpha) - jnp.log(sigma))


def flow_log_snr(t: jax.Array) -> jax.Array:
  """log(alpha^2 / sigma^2) of rectified flow, alpha = 1 - t, sigma = t."""
  return 2.0 * (jnp.log1p(-t) - jnp.log(t))


def vp_level_for_flow_level(s: jax.Array, schedule: str = "cosine") -> jax.Array:
  """The VP level t with the same SNR as flow level s: sigma_t / alpha_t = s / (1 - s)."""
  if schedule == "cosine":
    return jnp.arctan2(s, 1.0 - s) * (2.0 / jnp.pi)
  if schedule == "linear":
    # alpha^2 = (1 - s)^2 / ((1 - s)^2 + s^2); solve the quadratic in t of -log(alpha^2).
    c = jnp.log1p((s / (1.0 - s)) ** 2)
    a, b = 0.5 * (_BETA_MAX - _BETA_MIN), _BETA_MIN
    return (-b + jnp.sqrt(b * b + 4.0 * a * c)) / (2.0 * a)
  raise ValueError(f"VP schedule must be one of {VP_SCHEDULES}, got {schedule!r}")


# ----------------------------------------------------------------------------- VP objective

def vp_interpolate(x0: jax.Array, eps: jax.Array, t: jax.Array,
                   schedule: str = "cosine") -> jax.Array:
  """z_t = alpha_t x0 + sigma_t eps.  x0, eps: [B, T, ...]; t: [B, T]. Returns [B, T, ...]."""
  alpha, sigma = vp_alpha_sigma(broadcast_levels(t, x0), schedule)
  return alpha * x0 + sigma * eps


def vp_target(x0: jax.Array, eps: jax.Array, t: jax.Array, prediction: str,
              schedule: str = "cosine") -> jax.Array:
  """Regression target for `prediction` ('eps', 'v', 'x0'), same shape as x0."""
  alpha, sigma = vp_alpha_sigma(broadcast_levels(t, x0), schedule)
  return vp_from_x0_eps(x0, eps, alpha, sigma, prediction)


def vp_to_x0_eps(z: jax.Array, pred: jax.Array, alpha, sigma,
                 prediction: str) -> tuple[jax.Array, jax.Array]:
  """(x0, eps) from a VP prediction at z = alpha x0 + sigma eps (alpha, sigma broadcastable).

  eps-prediction divides by alpha, so it is ill-conditioned at the top level; v-prediction
  (x0 = alpha z - sigma v, eps = sigma z + alpha v) is exact everywhere, which is why it is the
  better choice with a zero-terminal-SNR schedule.
  """
  if prediction == "eps":
    return (z - sigma * pred) / alpha, pred
  if prediction == "v":
    return alpha * z - sigma * pred, sigma * z + alpha * pred
  if prediction == "x0":
    return pred, (z - alpha * pred) / sigma
  raise ValueError(f"VP prediction must be 'eps', 'v' or 'x0', got {prediction!r}")


def vp_from_x0_eps(x0: jax.Array, eps: jax.Array, alpha, sigma, prediction: str) -> jax.Array:
  """The VP prediction ('eps', 'v', 'x0') that corresponds to (x0, eps)."""
  if prediction == "eps":
    return eps
  if prediction == "v":
    return alpha * eps - sigma * x0
  if prediction == "x0":
    return x0
  raise ValueError(f"VP prediction must be 'eps', 'v' or 'x0', got {prediction!r}")


# ----------------------------------------------------------------------------- flow conversions

def flow_to_x0_eps(x: jax.Array, velocity: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x0, eps) from a flow velocity at x_t: x0 = x - t u, eps = x + (1 - t) u. t: [B, T]."""
  tb = broadcast_levels(t, x)
  return x - tb * velocity, x + (1.0 - tb) * velocity


def flow_velocity(x0: jax.Array, eps: jax.Array) -> jax.Array:
  """u = eps - x0."""
  return eps - x0


def vp_as_flow_velocity(model_fn, prediction: str, schedule: str = "cosine"):
  """Wraps a VP denoiser as a flow `velocity_fn(x [B, T, ...], s [B, T])` for the samplers.

  model_fn(z [B, T, ...], t_vp [B, T]) -> eps or v prediction. The flow point x at level s is the
  VP point z = (alpha + sigma) x at the VP level with the same SNR; the prediction is turned into
  (x0, eps) and returned as u = eps - x0.
  """
  if prediction not in ("eps", "v", "x0"):
    raise ValueError(f"VP prediction must be 'eps', 'v' or 'x0', got {prediction!r}")

  def velocity(x, s):
    t_vp = vp_level_for_flow_level(s, schedule)
    alpha, sigma = vp_alpha_sigma(broadcast_levels(t_vp, x), schedule)
    z = (alpha + sigma) * x
    x0, eps = vp_to_x0_eps(z, model_fn(z, t_vp), alpha, sigma, prediction)
    return eps - x0

  return velocity


# ----------------------------------------------------------------------------- timestep sampling

def shifted_levels(t: jax.Array, shift: float | jax.Array) -> jax.Array:
  """t' = shift t / (1 + (shift - 1) t): shift > 1 moves levels toward noise (SD3 / Flux).

  Equivalent to adding log(shift) to the logit of t, i.e. dividing the SNR by shift^2.
  """
  return shift * t / (1.0 + (shift - 1.0) * t)


def shift_for(num_tokens: int, *, base_tokens: int = 256, base_shift: float = 0.5,
              max_tokens: int = 4096, max_shift: float = 1.15) -> float:
  """Resolution/length-dependent shift (Flux): log(shift) linear in the token count.

  For video, num_tokens = latent frames * (h / patch) * (w / patch): longer or larger clips get
  more shift, since more tokens average away more noise at a given level. The defaults are Flux's
  (mu = 0.5 at 256 tokens, 1.15 at 4096, shift = e^mu); extrapolates linearly beyond max_tokens.
  """
  if num_tokens < 1 or max_tokens <= base_tokens:
    raise ValueError(f"need num_tokens >= 1 and max_tokens > base_tokens, got num_tokens="
                     f"{num_tokens}, base_tokens={base_tokens}, max_tokens={max_tokens}")
  slope = (max_shift - base_shift) / (max_tokens - base_tokens)
  return math.exp(base_shift + slope * (num_tokens - base_tokens))


def sample_timesteps(rng: jax.Array, shape: tuple[int, ...], *, kind: str = "logit_normal",
                     shift: float = 1.0, mean: float = 0.0, std: float = 1.0) -> jax.Array:
  """Training levels in (0, 1): 'uniform' or 'logit_normal' (SD3), then `shifted_levels`."""
  if kind == "uniform":
    t = jax.random.uniform(rng, shape)
  elif kind == "logit_normal":
    t = jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape))
  else:
    raise ValueError(f"timestep sampling kind must be 'uniform' or 'logit_normal', got {kind!r}")
  return shifted_levels(t, shift)


# ----------------------------------------------------------------------------- loss weighting

def x0_mse_factor(snr: jax.Array, prediction: str) -> jax.Array:
  """How much larger a prediction's squared error is than the x0 squared error at this SNR.

  eps: snr (eps - eps' = sqrt(snr) (x0 - x0')); v (VP): snr + 1; x0: 1;
  flow velocity: (1 + sqrt(snr))^2 since x0 - x0' = -t (u - u') and 1 / t = 1 + sqrt(snr).
  """
  if prediction == "eps":
    return snr
  if prediction == "v":
    return snr + 1.0
  if prediction == "x0":
    return jnp.ones_like(snr)
  if prediction == "flow":
    return jnp.square(1.0 + jnp.sqrt(snr))
  raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def loss_weight(snr: jax.Array, kind: str = "uniform", *, prediction: str = "flow",
                gamma: float = 5.0) -> jax.Array:
  """Per-example weight on a `prediction`-space MSE, as a function of the SNR (alpha^2/sigma^2).

  'uniform': 1 (plain MSE in the prediction's own space).
  'min_snr': Min-SNR-gamma (Hang et al. 2023): the x0-space weight min(snr, gamma), divided by
    `x0_mse_factor` so it applies to this prediction's loss; clips the weight of the easy,
    low-noise levels that otherwise dominate training.
  'soft_min_snr': the smooth version snr gamma / (snr + gamma) (Crowson et al. 2024).
  """
  if kind == "uniform":
    return jnp.ones_like(snr)
  if kind == "min_snr":
    x0_weight = jnp.minimum(snr, gamma)
  elif kind == "soft_min_snr":
    x0_weight = snr * gamma / (snr + gamma)
  else:
    raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {kind!r}")
  return x0_weight / x0_mse_factor(snr, prediction)
