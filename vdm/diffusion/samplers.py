"""ODE/SDE samplers for rectified flow, all driven by one noise-level matrix.

Convention (as in `vdm.diffusion.flow`): t = 0 is data, t = 1 is noise, x_t = (1 - t) x0 + t eps,
and the denoiser predicts the velocity v = eps - x0. From v and x_t:

    x0 = x_t - t v,        eps = x_t + (1 - t) v,        log-SNR  lambda = log((1 - t) / t).

Every sampler here is a pure function

    sampler(velocity_fn, x_init, levels, **options) -> x

with velocity_fn(x [B, T, ...], t [B, T]) -> v [B, T, ...] and levels [S + 1, T] the noise level of
each frame before each of the S steps (row S: the end). Per-frame levels are what make every
generation mode (parallel, autoregressive, rolling, pinned frames) the same call. Rules shared by
all samplers:

  * a frame whose level does not change in a step (t_next == t_now) is left bit-identical, so
    pinned and context frames stay exact;
  * levels never increase along a frame's column (re-noising is the caller's job, done once);
  * a step that touches an infinite log-SNR (starting at t = 1 or ending at t = 0) is first order.
    That is the standard "lower order at the ends" of DPM-Solver/UniPC, and it is also what keeps
    the network from being asked for a second evaluation at t = 0, a level it never trains on.
    Those two O(h^2) local errors cap every method here at global order 2.

The whole loop is one `jax.lax.scan`, so a sampler jits with the matrix as a traced input.
Options that change the program (churn, eta, variant) are Python values. `on_step(i)`, a host
function, is called at each step (progress and cancellation in `vdm.Pipeline.generate`).
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

# name -> sampler function, filled by `register_sampler` at the bottom of this file. Adding a
# sampler is one function with the signature above and one registration.
SAMPLERS: dict = {}
# Plus euler/heun with churn > 0 and ddim with eta > 0.
STOCHASTIC_SAMPLERS = ("euler_ancestral", "consistency")
# Samplers whose step uses earlier steps' evaluations (per-frame history): they cannot be run one
# row of a noise-level matrix at a time (rolling generation as a stream).
MULTISTEP_SAMPLERS = ("dpmpp_2m", "unipc")
UNIPC_VARIANTS = ("bh1", "bh2")


# ----------------------------------------------------------------------------- helpers

def _per_frame(a: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes a per-frame array a [T] to broadcast against x [B, T, ...]."""
  return a.reshape((1,) + a.shape + (1,) * (x.ndim - 2))


def _levels_for_batch(t: jax.Array, x: jax.Array) -> jax.Array:
  """Per-frame levels t [T] as the [B, T] argument velocity_fn expects."""
  return jnp.broadcast_to(t, (x.shape[0],) + t.shape)


def _check(x_init: jax.Array, levels) -> jax.Array:
  levels = jnp.asarray(levels, jnp.float32)
  if levels.ndim != 2 or levels.shape[0] < 2:
    raise ValueError(f"levels must be [steps + 1, frames] with steps >= 1, got shape {levels.shape}")
  if x_init.ndim < 2 or x_init.shape[1] != levels.shape[1]:
    raise ValueError(f"x_init [B, T, ...] has T={x_init.shape[1] if x_init.ndim > 1 else None} "
                     f"frames but levels has {levels.shape[1]} columns")
  return levels


def _step_inputs(levels: jax.Array):
  """(t_now, t_next, step index) for each of the S steps, the xs of the scan."""
  return levels[:-1], levels[1:], jnp.arange(levels.shape[0] - 1)


def scan_steps(step, init, levels: jax.Array, on_step=None):
  """`jax.lax.scan` of step(carry, (t_now, t_next, i)) over the S rows of levels; returns the
  scan's (carry, outputs). on_step(i) is called on the host at each step i (a
  `jax.debug.callback` that reads only the step index, so the values computed do not change);
  an exception it raises stops the scan and surfaces where the result is next read."""
  if on_step is not None:
    inner = step

    def step(carry, inputs):
      jax.debug.callback(on_step, inputs[2])
      return inner(carry, inputs)

  return jax.lax.scan(step, init, _step_inputs(levels))


def _need_rng(rng, name: str, option: str):
  if rng is None:
    raise ValueError(f"sampler {name!r} with {option} is stochastic and needs an explicit rng")
  return rng


def renoise(x: jax.Array, t: jax.Array, t_hat: jax.Array, noise: jax.Array) -> jax.Array:
  """Moves x from level t up to level t_hat >= t with the forward kernel (exact in distribution).

  x_t_hat = a x_t + sqrt(t_hat^2 - a^2 t^2) z with a = (1 - t_hat) / (1 - t): if x_t has the
  marginal at t, the result has the marginal at t_hat. x, noise: [B, T, ...]; t, t_hat: [T].
  Frames at t = 1 have nowhere to go and are returned unchanged.
  """
  at_top = t >= 1.0
  a = jnp.where(at_top, 1.0, (1.0 - t_hat) / jnp.where(at_top, 1.0, 1.0 - t))
  std = jnp.sqrt(jnp.maximum(t_hat ** 2 - (a * t) ** 2, 0.0))
  std = jnp.where(at_top, 0.0, std)
  return _per_frame(a, x) * x + _per_frame(std, x) * noise


def _churned(x, t_now, t_next, moving, churn: float, key):
  """EDM-style churn: raise moving frames from t to min(t + churn (t - t_next), 1) first.

  The rise is proportional to the step, as Karras et al.'s gamma = S_churn / S is, so the
  sampler stays consistent: the extra noise and its removal both vanish as steps grow.
  """
  t_hat = jnp.where(moving, jnp.minimum(t_now + churn * (t_now - t_next), 1.0), t_now)
  x_hat = renoise(x, t_now, t_hat, jax.random.normal(key, x.shape, x.dtype))
  return jnp.where(_per_frame(t_hat > t_now, x), x_hat, x), t_hat


def _log_snr(t: jax.Array) -> jax.Array:
  """lambda = log((1 - t) / t), clipped so both ends stay finite; callers mask the ends out."""
  t = jnp.clip(t, 1e-7, 1.0 - 1e-7)
  return jnp.log1p(-t) - jnp.log(t)


def _first_order(x, x0, t_now, t_next):
  """The exact-exponential (DDIM = DPM-Solver-1) step in data prediction; equals Euler in flow.

  x_next = (t_next / t_now) x + (1 - t_next / t_now) x0, written without log-SNR so it is finite
  at both ends (t_now = 1, t_next = 0).
  """
  ratio = _per_frame(t_next / jnp.where(t_now > 0, t_now, 1.0), x)
  return ratio * x + (1.0 - ratio) * x0


# ----------------------------------------------------------------------------- one-step methods

def _step_start(x, t_now, t_next, i, churn: float, rng):
  """Which frames move this step, and the (x, t) to integrate from: churned when churn > 0."""
  moving = t_next < t_now
  if churn > 0:
    x, t_now = _churned(x, t_now, t_next, moving, churn, jax.random.fold_in(rng, i))
  return moving, x, t_now


def euler(velocity_fn, x_init: jax.Array, levels, *, churn: float = 0.0, rng=None,
          on_step=None) -> jax.Array:
  """Euler along the noise-level matrix; with churn > 0 the stochastic EDM variant.

  Args:
    velocity_fn: (x [B, T, ...], t [B, T]) -> v [B, T, ...].
    x_init: [B, T, ...] latents at the levels of row 0.
    levels: [S + 1, T] per-frame levels, non-increasing down each column.
    churn: >= 0. Before each step a moving frame is re-noised from t up to
      min(t + churn (t - t_next), 1) with fresh noise (the exact forward kernel), then integrated
      from there to t_next: a step of (1 + churn) times the size, churn of it backwards in noise
      (Karras et al. 2022's S_churn). Needs rng.
    rng: jax PRNG key, only used when churn > 0.
  Returns:
    x at the levels of the last row, [B, T, ...]. One velocity evaluation per step.
  """
  levels = _check(x_init, levels)
  if churn > 0:
    _need_rng(rng, "euler", f"churn={churn}")

  def step(x, inputs):
    t_now, t_next, i = inputs
    moving, x_in, t_in = _step_start(x, t_now, t_next, i, churn, rng)
    v = velocity_fn(x_in, _levels_for_batch(t_in, x))
    x_new = x_in + _per_frame(t_next - t_in, x) * v
    return jnp.where(_per_frame(moving, x), x_new, x), None

  x, _ = scan_steps(step, x_init, levels, on_step)
  return x


def heun(velocity_fn, x_init: jax.Array, levels, *, churn: float = 0.0, rng=None,
         final_euler: bool = True, on_step=None) -> jax.Array:
  """Heun's second-order method (Karras et al. 2022, Alg. 1/2) along the noise-level matrix.

  Two velocity evaluations per step: an Euler predictor, then the trapezoid corrector. A frame
  whose step ends at t = 0 takes the plain Euler step when final_euler (the EDM convention; the
  network never trains at t = 0), which keeps the global order at 2.
  Shapes and churn/rng as in `euler`.
  """
  levels = _check(x_init, levels)
  if churn > 0:
    _need_rng(rng, "heun", f"churn={churn}")

  def step(x, inputs):
    t_now, t_next, i = inputs
    moving, x_in, t_in = _step_start(x, t_now, t_next, i, churn, rng)
    dt = _per_frame(t_next - t_in, x)
    v1 = velocity_fn(x_in, _levels_for_batch(t_in, x))
    x_euler = x_in + dt * v1
    v2 = velocity_fn(x_euler, _levels_for_batch(t_next, x))
    x_heun = x_in + dt * 0.5 * (v1 + v2)
    if final_euler:
      x_heun = jnp.where(_per_frame(t_next <= 0.0, x), x_euler, x_heun)
    return jnp.where(_per_frame(moving, x), x_heun, x), None

  x, _ = scan_steps(step, x_init, levels, on_step)
  return x


def ddim(velocity_fn, x_init: jax.Array, levels, *, eta: float = 0.0, rng=None,
         on_step=None) -> jax.Array:
  """DDIM (Song et al. 2021) in the x0/eps parameterisation recovered from the velocity.

  x0 = x - t v, eps = x + (1 - t) v, and with a_s = 1 - t_next, s_s = t_next:

      x_next = a_s x0 + sqrt(s_s^2 - c^2) eps + c z,
      c = eta * (s_s / s_t) * sqrt(s_t^2 - (a_t / a_s)^2 s_s^2)   (DDPM posterior std at eta = 1).

  With eta = 0 this is algebraically the Euler step (rectified flow is already the DDIM ODE);
  eta = 1 is the ancestral (DDPM) sampler. Needs rng when eta > 0. Shapes as in `euler`.
  """
  levels = _check(x_init, levels)
  stochastic = eta > 0
  if stochastic:
    _need_rng(rng, "ddim", f"eta={eta}")

  def step(x, inputs):
    t_now, t_next, i = inputs
    moving = t_next < t_now
    v = velocity_fn(x, _levels_for_batch(t_now, x))
    tb = _per_frame(t_now, x)
    x0, eps = x - tb * v, x + (1.0 - tb) * v
    a_t, s_t, a_s, s_s = 1.0 - t_now, t_now, 1.0 - t_next, t_next
    if stochastic:
      # Moving frames have t_next < t_now <= 1, so a_s > 0 and s_t > 0; the guards only keep the
      # masked-out (constant) frames free of 0/0.
      ratio = a_t / jnp.where(moving, a_s, 1.0)
      c = eta * s_s / jnp.where(moving, s_t, 1.0) * jnp.sqrt(
          jnp.maximum(s_t ** 2 - (ratio * s_s) ** 2, 0.0))
      c = jnp.minimum(c, s_s)
      z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
      x_new = (_per_frame(a_s, x) * x0 + _per_frame(jnp.sqrt(s_s ** 2 - c ** 2), x) * eps
               + _per_frame(c, x) * z)
    else:
      x_new = _per_frame(a_s, x) * x0 + _per_frame(s_s, x) * eps
    return jnp.where(_per_frame(moving, x), x_new, x), None

  x, _ = scan_steps(step, x_init, levels, on_step)
  return x


def euler_ancestral(velocity_fn, x_init: jax.Array, levels, *, eta: float = 1.0,
                    rng=None, on_step=None) -> jax.Array:
  """Ancestral sampling: `ddim` with eta = 1 by default (fresh noise every step). Needs rng."""
  return ddim(velocity_fn, x_init, levels, eta=eta, rng=_need_rng(rng, "euler_ancestral", "eta"),
              on_step=on_step)


# ----------------------------------------------------------------------------- few-step samplers

def consistency(velocity_fn, x_init: jax.Array, levels, *, rng=None,
                on_step=None) -> jax.Array:
  """Multistep consistency sampling (Song et al. 2023, Alg. 1): the few-step sampler of
  distilled generators (CausVid, Self-Forcing, and vdm's consistency, DMD and Self-Forcing
  students). Each step predicts the clean sample x0 = x - t v and puts it at the next level with
  fresh noise,

      x_next = (1 - t_next) x0 + t_next z,

  so a step ending at 0 returns x0. Unlike the ODE samplers it keeps nothing of the noise it was
  given: a generator trained to map any level straight to data needs no integration, and at each
  step it sees an input drawn exactly as in training (a clean estimate re-noised), whatever the
  steps before did. One velocity evaluation per step. Needs rng (z of step i is drawn from
  fold_in(rng, i)). Shapes as in `euler`.
  """
  levels = _check(x_init, levels)
  rng = _need_rng(rng, "consistency", "fresh noise every step")

  def step(x, inputs):
    t_now, t_next, i = inputs
    moving = t_next < t_now
    v = velocity_fn(x, _levels_for_batch(t_now, x))
    x0 = x - _per_frame(t_now, x) * v
    z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, x.dtype)
    x_new = _per_frame(1.0 - t_next, x) * x0 + _per_frame(t_next, x) * z
    return jnp.where(_per_frame(moving, x), x_new, x), None

  x, _ = scan_steps(step, x_init, levels, on_step)
  return x


def shortcut(velocity_fn, x_init: jax.Array, levels, *, on_step=None) -> jax.Array:
  """Euler steps whose size the model is told: velocity_fn(x, t, step=d) with d [B, T] = t_now -
  t_next per frame (0 for a frame that does not move) is the average velocity over the step, so
  x_next = x - d v is exact for a shortcut model (Frans et al. 2024) at any step count. Shapes as
  in `euler`; velocity_fn must take the `step` keyword (a model with dit.step_input)."""
  levels = _check(x_init, levels)

  def step(x, inputs):
    t_now, t_next, _ = inputs
    moving = t_next < t_now
    d = jnp.where(moving, t_now - t_next, 0.0)
    v = velocity_fn(x, _levels_for_batch(t_now, x), step=_levels_for_batch(d, x))
    return jnp.where(_per_frame(moving, x), x - _per_frame(d, x) * v, x), None

  x, _ = scan_steps(step, x_init, levels, on_step)
  return x


# ----------------------------------------------------------------------------- multistep methods

def _phi2(z):
  """(phi_1(z) - 1) / z with phi_1(z) = (e^z - 1) / z; Taylor near 0 to avoid cancellation."""
  small = jnp.abs(z) < 0.1
  zs = jnp.where(small, 1.0, z)
  exact = (jnp.expm1(zs) / zs - 1.0) / zs
  return jnp.where(small, 0.5 + z / 6.0 + z ** 2 / 24.0 + z ** 3 / 120.0, exact)


def _phi3(z):
  """(phi_2(z) - 1/2) / z; Taylor near 0."""
  small = jnp.abs(z) < 0.1
  zs = jnp.where(small, 1.0, z)
  exact = (_phi2(zs) - 0.5) / zs
  return jnp.where(small, 1.0 / 6.0 + z / 24.0 + z ** 2 / 120.0 + z ** 3 / 720.0, exact)


def _unipc_b(hh, variant: str):
  """B(h) and the (b1, b2) right-hand side of UniPC's order conditions, hh = -h (data pred.)."""
  phi1 = jnp.where(jnp.abs(hh) < 1e-4, 1.0 + hh / 2.0, jnp.expm1(hh) / jnp.where(hh == 0, 1.0, hh))
  # h_phi_k in the paper's notation: h_phi_1/hh - 1 = hh phi2, then (.)/hh - 1/2 = hh phi3.
  b_h = hh if variant == "bh1" else hh * phi1
  b1 = hh * _phi2(hh) / b_h
  b2 = 2.0 * hh * _phi3(hh) / b_h
  return b_h, b1, b2


def _multistep(velocity_fn, x_init, levels, *, corrector: bool, variant: str, on_step=None):
  """UniPC with a second-order predictor (UniP-2) and, if corrector, the UniC corrector.

  With variant 'bh2' the predictor is exactly DPM-Solver++(2M), so `dpmpp_2m` is this function
  without the corrector. History is kept per frame (the data predictions at the last two levels
  the frame stepped from), so frames that wait (autoregressive chunks) or sit still (pinned,
  context) keep their own history, and a frame's corrector runs only when it moves again.
  """
  levels = _check(x_init, levels)
  frames = levels.shape[1]
  zeros_t = jnp.zeros((frames,), jnp.float32)
  init = dict(x=x_init, d0=jnp.zeros_like(x_init), d1=jnp.zeros_like(x_init), t0=zeros_t + 1.0,
              t1=zeros_t + 1.0, n_hist=jnp.zeros((frames,), jnp.int32), x_last=x_init,
              pending=jnp.zeros((frames,), bool), last_order=jnp.ones((frames,), jnp.int32))

  def step(state, inputs):
    t_now, t_next, _ = inputs
    x = state["x"]
    moving = t_next < t_now
    v = velocity_fn(x, _levels_for_batch(t_now, x))
    d_now = x - _per_frame(t_now, x) * v

    if corrector:
      # UniC for the previous step s0 -> t_now of each frame that moved then and moves now: it
      # reuses this evaluation (no extra model call). Steps from t = 1 are never pending.
      s0, m0, m1, t1 = state["t0"], state["d0"], state["d1"], state["t1"]
      lam_t, lam_s0, lam_1 = _log_snr(t_now), _log_snr(s0), _log_snr(t1)
      h = jnp.where(state["pending"], lam_t - lam_s0, 1.0)
      b_h, b1, b2 = _unipc_b(-h, variant)
      r1 = (lam_1 - lam_s0) / h
      order2 = (state["last_order"] == 2) & (t1 < 1.0)
      r1 = jnp.where(order2, r1, -1.0)
      rho1 = (b1 - b2) / (1.0 - r1)
      rho2 = jnp.where(order2, b1 - rho1, 0.5)
      rho1 = jnp.where(order2, rho1, 0.0)
      x_base = _first_order(state["x_last"], m0, s0, t_now)
      corr = (_per_frame(rho1 / r1, x) * (m1 - m0) + _per_frame(rho2, x) * (d_now - m0))
      x_corr = x_base - _per_frame((1.0 - t_now) * b_h, x) * corr
      x = jnp.where(_per_frame(state["pending"] & moving, x), x_corr, x)

    # Push this evaluation onto the history of the moving frames.
    mv = _per_frame(moving, x)
    d1 = jnp.where(mv, state["d0"], state["d1"])
    t1 = jnp.where(moving, state["t0"], state["t1"])
    d0 = jnp.where(mv, d_now, state["d0"])
    n_hist = jnp.where(moving, jnp.minimum(state["n_hist"] + 1, 2), state["n_hist"])

    # UniP-2 / DPM-Solver++(2M): second order when the previous level and the target both have a
    # finite log-SNR, else the exact first-order step.
    order2 = (n_hist >= 2) & (t1 < 1.0) & (t_next > 0.0)
    lam_now, lam_next, lam_1 = _log_snr(t_now), _log_snr(t_next), _log_snr(t1)
    h = jnp.where(order2, lam_next - lam_now, 1.0)
    r1 = jnp.where(order2, (lam_1 - lam_now) / h, -1.0)
    b_h, _, _ = _unipc_b(-h, variant)
    x_pred = _first_order(x, d_now, t_now, t_next)
    x_pred2 = x_pred - _per_frame((1.0 - t_next) * b_h * 0.5 / r1, x) * (d1 - d_now)
    x_pred = jnp.where(_per_frame(order2, x), x_pred2, x_pred)
    new = dict(
        x=jnp.where(mv, x_pred, x), d0=d0, d1=d1, t0=jnp.where(moving, t_now, state["t0"]), t1=t1,
        n_hist=n_hist, x_last=jnp.where(mv, x, state["x_last"]),
        # The corrector needs a finite log-SNR at both ends of the step it corrects.
        pending=moving & (t_next > 0.0) & (t_now < 1.0),
        last_order=jnp.where(moving, jnp.where(order2, 2, 1), state["last_order"]))
    return new, None

  state, _ = scan_steps(step, init, levels, on_step)
  return state["x"]


def dpmpp_2m(velocity_fn, x_init: jax.Array, levels, *, on_step=None) -> jax.Array:
  """DPM-Solver++(2M) (Lu et al. 2022) for rectified flow: data prediction x0 = x - t v,
  multistep in lambda = log((1 - t) / t); one velocity evaluation per step.

  Second order inside (0, 1); the step from t = 1 (lambda = -inf, no usable history) and the step
  into t = 0 (lambda = +inf) are the exact first-order step. Shapes as in `euler`.
  """
  return _multistep(velocity_fn, x_init, levels, corrector=False, variant="bh2", on_step=on_step)


def unipc(velocity_fn, x_init: jax.Array, levels, *, variant: str = "bh2",
          on_step=None) -> jax.Array:
  """UniPC (Zhao et al. 2023), order 2: the UniP-2 predictor plus the UniC corrector, in data
  prediction, one velocity evaluation per step (the corrector reuses the next step's call).

  variant 'bh2' (B(h) = e^h - 1, the default the paper recommends for guided sampling, whose
  predictor is DPM-Solver++(2M)) or 'bh1' (B(h) = h). The corrector is skipped for steps that
  touch an infinite log-SNR (from t = 1 or into t = 0) and for a frame that stops moving, so a
  frame whose level is constant in a step stays bit-identical. Shapes as in `euler`.
  """
  if variant not in UNIPC_VARIANTS:
    raise ValueError(f"unipc variant must be one of {UNIPC_VARIANTS}, got {variant!r}")
  return _multistep(velocity_fn, x_init, levels, corrector=True, variant=variant,
                    on_step=on_step)


# ----------------------------------------------------------------------------- registry

_POSITIONAL = ("velocity_fn", "x_init", "levels")


def register_sampler(name: str, fn) -> None:
  """Adds `fn(velocity_fn, x_init, levels, **options)` as sampler `name` (the pipeline, the CLI's
  --sampler and config validation read SAMPLERS). A sampler that takes `rng` is given the
  pipeline's sampling key; one that takes `on_step` is given the step callback (run the loop with
  `scan_steps`)."""
  params = tuple(inspect.signature(fn).parameters)
  if params[:3] != _POSITIONAL:
    raise ValueError(f"sampler {name!r}: the first parameters must be {_POSITIONAL}, got "
                     f"{params[:3]}")
  SAMPLERS[name] = fn


for _name, _fn in dict(euler=euler, heun=heun, ddim=ddim, euler_ancestral=euler_ancestral,
                       dpmpp_2m=dpmpp_2m, unipc=unipc, consistency=consistency,
                       shortcut=shortcut).items():
  register_sampler(_name, _fn)


def sample(name: str, velocity_fn, x_init: jax.Array, levels, *, rng=None, on_step=None,
           **opts) -> jax.Array:
  """Runs sampler `name` (one of SAMPLERS) along levels [S + 1, T]; returns x [B, T, ...].

  opts are the sampler's own options (euler/heun: churn; heun: final_euler; ddim/euler_ancestral:
  eta; unipc: variant). rng is required by the stochastic settings and ignored otherwise.
  on_step(i), a host function, is called at each step i by the samplers that take it (all
  built-in ones); a registered sampler without an `on_step` parameter runs without it.
  """
  if name not in SAMPLERS:
    raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {name!r}")
  fn = SAMPLERS[name]
  parameters = inspect.signature(fn).parameters
  allowed = tuple(k for k in parameters if k not in _POSITIONAL + ("rng", "on_step"))
  unknown = sorted(set(opts) - set(allowed))
  if unknown:
    raise ValueError(f"sampler {name!r} does not take option(s) {unknown}; allowed: {allowed}")
  if "rng" in parameters:
    opts = dict(opts, rng=rng)
  if on_step is not None and "on_step" in parameters:
    opts = dict(opts, on_step=on_step)
  return fn(velocity_fn, x_init, levels, **opts)
