"""Samplers, VP objectives and guidance against closed forms on Gaussian data.

For x0 ~ N(mu, sigma^2) per dimension the flow velocity and the ODE map are known exactly: the
flow from t = 1 to level t is affine, x_t = (1 - t) mu + sqrt((1 - t)^2 sigma^2 + t^2) x1.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm.diffusion import guidance, objectives, samplers
from vdm.diffusion.gaussian import exact_velocity, flow_map
from vdm.generate.modes import generation_mode, parallel_levels

MU, SIGMA = 1.0, 0.3
X1 = jnp.linspace(-2.0, 2.0, 9).reshape(9, 1, 1)


def exact_map(x1, t_end, mu=MU, sigma=SIGMA):
  return (1 - t_end) * mu + np.sqrt((1 - t_end) ** 2 * sigma ** 2 + t_end ** 2) * x1


def plain_euler(velocity_fn, x, levels):
  """The Euler recurrence x <- x + (t_next - t) v(x, t), row by row of levels [S + 1, T], with
  nothing else (no frame masking, no churn): what the `euler` sampler must equal bit for bit."""
  def step(x, pair):
    t_now, t_next = pair
    t = jnp.broadcast_to(t_now, (x.shape[0],) + t_now.shape)
    dt = jnp.broadcast_to(t_next - t_now, t.shape).reshape(t.shape + (1,) * (x.ndim - 2))
    return x + dt * velocity_fn(x, t), None

  return jax.lax.scan(step, x, (levels[:-1], levels[1:]))[0]


def max_errors(name, steps_list, t_end, **opts):
  errors = []
  for steps in steps_list:
    levels = np.linspace(1.0, t_end, steps + 1, dtype=np.float32)[:, None]
    x = samplers.sample(name, exact_velocity(MU, SIGMA), X1, levels, **opts)
    errors.append(float(jnp.max(jnp.abs(x - exact_map(X1, t_end)))))
  return np.array(errors)


def slope(steps_list, errors):
  """Empirical order: minus the least-squares slope of log error against log steps."""
  return -np.polyfit(np.log(steps_list), np.log(errors), 1)[0]


# Euler and Heun are measured over the whole flow [1, 0]. The log-SNR multistep methods are
# measured on [1, 0.05]: on a grid uniform in t, the last steps before t = 0 stay O(1) long in
# log-SNR however many steps there are, which makes their error first order on the full interval
# (measured ~1 at 32 -> 64 steps, still 3-6x below Euler); that is why DPM-Solver and UniPC are
# analysed on [t_end, 1]. UniPC's corrector lifts it toward order 3 inside the interval.
ORDER_CASES = [
    ("euler", {}, 0.0, (8, 16, 32, 64), (0.65, 1.35)),
    ("heun", {}, 0.0, (8, 16, 32, 64), (1.65, 2.35)),
    ("dpmpp_2m", {}, 0.05, (16, 32, 64), (1.65, 2.35)),
    ("unipc", dict(variant="bh2"), 0.05, (16, 32, 64), (1.65, 3.35)),
    ("unipc", dict(variant="bh1"), 0.05, (16, 32, 64), (1.65, 3.35)),
]


@pytest.mark.parametrize("name,opts,t_end,steps_list,band", ORDER_CASES,
                         ids=[f"{c[0]}{c[1].get('variant', '')}" for c in ORDER_CASES])
def test_convergence_order(name, opts, t_end, steps_list, band):
  errors = max_errors(name, steps_list, t_end, **opts)
  assert np.all(np.diff(errors) < 0), errors
  order = slope(steps_list, errors)
  assert band[0] < order < band[1], (order, errors)


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_multistep_full_interval_beats_euler(name):
  errors = max_errors(name, (32, 64), 0.0)
  euler_errors = max_errors("euler", (32, 64), 0.0)
  assert errors[1] < errors[0] and np.all(errors < euler_errors / 3), (errors, euler_errors)


def test_ddim_is_euler_and_euler_is_the_plain_recurrence():
  levels = parallel_levels(12, 1, shift=3.0)
  v = exact_velocity(MU, SIGMA)
  x_euler = samplers.sample("euler", v, X1, levels)
  np.testing.assert_allclose(samplers.sample("ddim", v, X1, levels), x_euler, atol=1e-5)
  np.testing.assert_array_equal(plain_euler(v, X1, jnp.asarray(levels)), x_euler)


@pytest.mark.parametrize("name", ["euler", "heun", "ddim", "dpmpp_2m", "unipc"])
def test_deterministic_samplers_reach_target(name):
  noise = jax.random.normal(jax.random.key(0), (4000, 1, 1))
  x = samplers.sample(name, exact_velocity(1.5, 0.4), noise, parallel_levels(64, 1, shift=2.0))
  assert abs(float(x.mean()) - 1.5) < 0.03 and abs(float(x.std()) - 0.4) < 0.02


@pytest.mark.parametrize("name,opts", [("euler", dict(churn=1.0)), ("heun", dict(churn=1.0)),
                                       ("ddim", dict(eta=0.5)), ("euler_ancestral", {})])
def test_stochastic_samplers_reach_target(name, opts):
  mu, sigma = 1.5, 0.4
  noise = jax.random.normal(jax.random.key(0), (20000, 1, 1))
  std_errors = []
  for steps in (32, 128):
    x = samplers.sample(name, exact_velocity(mu, sigma), noise, parallel_levels(steps, 1),
                        rng=jax.random.key(1), **opts)
    assert abs(float(x.mean()) - mu) < 0.01
    std_errors.append(abs(float(x.std()) - sigma))
  assert std_errors[1] < 0.015 and std_errors[1] <= std_errors[0] + 0.002, std_errors
  # Same key, same bits; the noise really is drawn from the key.
  small, levels = noise[:64], parallel_levels(8, 1)
  run = lambda key: samplers.sample(name, exact_velocity(mu, sigma), small, levels, rng=key, **opts)
  np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1)))
  assert not np.allclose(run(jax.random.key(1)), run(jax.random.key(2)))


ALL = [("euler", {}), ("heun", {}), ("ddim", {}), ("dpmpp_2m", {}), ("unipc", {}),
       ("euler", dict(churn=0.5)), ("heun", dict(churn=0.5)), ("ddim", dict(eta=1.0)),
       ("euler_ancestral", {}), ("consistency", {})]


@pytest.mark.parametrize("name,opts", ALL)
def test_constant_frames_stay_bit_identical(name, opts):
  """Pinned (0) and context (0.3) columns never move; the others do."""
  levels = np.array(parallel_levels(6, 4))
  levels[:, 0] = 0.0
  levels[:, 2] = 0.3
  levels[:3, 3] = 1.0  # a frame that waits at the top, then moves (autoregressive-style)
  x1 = jax.random.normal(jax.random.key(3), (2, 4, 3))
  x = samplers.sample(name, exact_velocity(0.5, 0.7), x1, levels, rng=jax.random.key(4), **opts)
  np.testing.assert_array_equal(x[:, 0], x1[:, 0])
  np.testing.assert_array_equal(x[:, 2], x1[:, 2])
  assert not np.allclose(x[:, 1], x1[:, 1]) and not np.allclose(x[:, 3], x1[:, 3])


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "unipc"])
@pytest.mark.parametrize("mode", ["autoregressive", "rolling"])
def test_per_frame_schedules_match_parallel_for_independent_frames(name, mode):
  """The exact velocity treats frames independently, so a frame that waits at level 1 and then
  runs the same grid must end exactly where parallel sampling puts it; for the multistep methods
  this checks that each frame keeps its own history."""
  levels, _ = generation_mode(mode, steps=8, frames=6, chunk=2)
  x1 = jax.random.normal(jax.random.key(5), (3, 6, 2))
  v = exact_velocity(MU, SIGMA)
  x = samplers.sample(name, v, x1, levels)
  x_par = samplers.sample(name, v, x1, parallel_levels(8, 6))
  np.testing.assert_allclose(x, x_par, atol=2e-6)


def test_autoregressive_with_context_noise_reaches_target():
  levels, _ = generation_mode("autoregressive", steps=32, frames=4, chunk=2, context_level=0.1)
  noise = jax.random.normal(jax.random.key(6), (5000, 4, 1))
  x = samplers.sample("heun", exact_velocity(1.5, 0.4), noise, levels)
  assert abs(float(x.mean()) - 1.5) < 0.02 and abs(float(x.std()) - 0.4) < 0.02


def test_sampler_jits_with_traced_levels():
  v = exact_velocity(MU, SIGMA)
  run = jax.jit(lambda x, lv: samplers.sample("unipc", v, x, lv))
  levels = parallel_levels(10, 1)
  np.testing.assert_allclose(run(X1, levels), samplers.sample("unipc", v, X1, levels), atol=1e-6)


def test_sampler_errors():
  v = exact_velocity(MU, SIGMA)
  levels = parallel_levels(4, 1)
  with pytest.raises(ValueError, match=r"sampler must be one of .*'euler'.*'unipc'"):
    samplers.sample("rk45", v, X1, levels)
  with pytest.raises(ValueError, match="eta"):
    samplers.sample("ddim", v, X1, levels, eta=0.5)  # stochastic without rng
  with pytest.raises(ValueError, match=r"option.*'churn'.*allowed"):
    samplers.sample("dpmpp_2m", v, X1, levels, churn=1.0)
  with pytest.raises(ValueError, match="variant"):
    samplers.sample("unipc", v, X1, levels, variant="bh3")
  with pytest.raises(ValueError, match="frames"):
    samplers.sample("euler", v, X1, parallel_levels(4, 2))
  with pytest.raises(ValueError, match="consistency.*rng"):
    samplers.sample("consistency", v, X1, levels)
  assert set(samplers.SAMPLERS) == {"euler", "heun", "ddim", "euler_ancestral", "dpmpp_2m",
                                    "unipc", "consistency", "shortcut"}


# ----------------------------------------------------------------------------- few-step samplers

def exact_flow_map(mu, sigma):
  """Phi(x, t, s): the exact ODE map of N(mu, sigma^2) data from level t to level s <= t."""
  return lambda x, t, s: flow_map(x, t, s, mu, sigma)


def as_velocity(x, t, target, s):
  """The velocity whose step from t to s lands on `target`: (x - target) / (t - s)."""
  return (x - target) / (t - s)


def test_consistency_sampler_with_the_exact_consistency_function():
  """A perfect consistency model predicts x0 = Phi(x_t, t, 0): one step is the exact ODE map,
  and any number of steps (re-noised in between) samples the exact N(mu, sigma^2)."""
  flow = exact_flow_map(MU, SIGMA)

  def velocity(x, t):
    t = t.reshape(t.shape + (1,) * (x.ndim - t.ndim))
    return as_velocity(x, t, flow(x, t, 0.0), 0.0)

  one = samplers.sample("consistency", velocity, X1, parallel_levels(1, 1), rng=jax.random.key(0))
  np.testing.assert_allclose(one, exact_map(X1, 0.0), atol=1e-5)
  noise = jax.random.normal(jax.random.key(1), (20000, 1, 1))
  for steps in (2, 4):
    x = samplers.sample("consistency", velocity, noise, parallel_levels(steps, 1, shift=3.0),
                        rng=jax.random.key(2))
    assert abs(float(x.mean()) - MU) < 0.01 and abs(float(x.std()) - SIGMA) < 0.01


def test_shortcut_sampler_is_exact_with_the_average_velocity_and_euler_at_step_zero():
  """Given the step size, a perfect shortcut model returns the average velocity over the step,
  so every step count lands on the exact ODE map; told step 0 (the instantaneous velocity) the
  sampler is Euler, bit for bit."""
  flow, v = exact_flow_map(MU, SIGMA), exact_velocity(MU, SIGMA)

  def average(x, t, step):
    t, d = (a.reshape(a.shape + (1,) * (x.ndim - a.ndim)) for a in (t, step))
    d = jnp.where(d > 0, d, 1.0)  # frames that do not move are left alone by the sampler
    return as_velocity(x, t, flow(x, t, t - d), t - d)

  for steps in (1, 3, 8):
    levels = parallel_levels(steps, 1, shift=3.0)
    np.testing.assert_allclose(samplers.sample("shortcut", average, X1, levels),
                               exact_map(X1, 0.0), atol=2e-5)
  levels = parallel_levels(6, 1, shift=2.0)
  np.testing.assert_array_equal(samplers.sample("shortcut", lambda x, t, step: v(x, t), X1, levels),
                                samplers.sample("euler", v, X1, levels))


def test_consistency_sampler_is_the_posterior_mean_renoised():
  """With the exact velocity the x0 it predicts is E[x0 | x_t]. From pure noise (t = 1) that is
  mu, re-noised to t1 with fresh noise z; the step to 0 then returns E[x0 | x_t1], so on levels
  (1, t1, 0) the output is mu + k z with k = (1 - t1) sigma^2 t1 / ((1 - t1)^2 sigma^2 + t1^2):
  its mean is mu and its std k (less than sigma: a few-step generator needs distillation)."""
  mu, sigma, t1 = 1.5, 0.4, 0.6
  noise = jax.random.normal(jax.random.key(0), (20000, 1, 1))
  levels = np.array([[1.0], [t1], [0.0]], np.float32)
  x = samplers.sample("consistency", exact_velocity(mu, sigma), noise, levels,
                      rng=jax.random.key(1))
  k = (1 - t1) * sigma ** 2 * t1 / ((1 - t1) ** 2 * sigma ** 2 + t1 ** 2)
  assert abs(float(x.mean()) - mu) < 0.01 and abs(float(x.std()) - k) < 0.01
  # It keeps nothing of its input noise: only the first step reads it, and at t = 1 the
  # prediction does not depend on it.
  other = samplers.sample("consistency", exact_velocity(mu, sigma), -noise, levels,
                          rng=jax.random.key(1))
  np.testing.assert_allclose(other, x, atol=1e-5)
  # A point mass (sigma -> 0) is reached in one step, whatever the levels.
  point = samplers.sample("consistency", exact_velocity(mu, 1e-4), noise[:16],
                          parallel_levels(4, 1, shift=5.0), rng=jax.random.key(2))
  np.testing.assert_allclose(point, mu, atol=1e-3)


# ----------------------------------------------------------------------------- objectives

@pytest.mark.parametrize("schedule", objectives.VP_SCHEDULES)
def test_vp_schedule_and_conversions_round_trip(schedule):
  t = jnp.linspace(0.01, 0.99, 7)
  alpha, sigma = objectives.vp_alpha_sigma(t, schedule)
  np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1.0, atol=1e-6)
  assert np.all(np.diff(objectives.vp_log_snr(t, schedule)) < 0)
  x0 = jax.random.normal(jax.random.key(0), (2, 7, 3))
  eps = jax.random.normal(jax.random.key(1), (2, 7, 3))
  tt = jnp.broadcast_to(t, (2, 7))
  z = objectives.vp_interpolate(x0, eps, tt, schedule)
  a, s = alpha[None, :, None], sigma[None, :, None]
  for prediction in ("eps", "v", "x0"):
    target = objectives.vp_target(x0, eps, tt, prediction, schedule)
    np.testing.assert_allclose(objectives.vp_from_x0_eps(x0, eps, a, s, prediction), target,
                               atol=1e-6)
    rx0, reps = objectives.vp_to_x0_eps(z, target, a, s, prediction)
    np.testing.assert_allclose(rx0, x0, atol=2e-4)
    np.testing.assert_allclose(reps, eps, atol=2e-4)
  # Flow side: x0/eps from the velocity.
  xt = (1 - tt[..., None]) * x0 + tt[..., None] * eps
  fx0, feps = objectives.flow_to_x0_eps(xt, objectives.flow_velocity(x0, eps), tt)
  np.testing.assert_allclose(fx0, x0, atol=1e-5)
  np.testing.assert_allclose(feps, eps, atol=1e-5)
  # Same SNR in both coordinate systems.
  s_flow = jnp.linspace(0.05, 0.95, 5)
  np.testing.assert_allclose(
      objectives.vp_log_snr(objectives.vp_level_for_flow_level(s_flow, schedule), schedule),
      objectives.flow_log_snr(s_flow), atol=1e-3)


@pytest.mark.parametrize("schedule", objectives.VP_SCHEDULES)
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_vp_model_drives_flow_samplers(schedule, prediction):
  """The exact VP denoiser, wrapped, is the exact flow velocity."""
  mu, sig = 0.7, 0.5

  def vp_model(z, t):
    alpha, sigma = objectives.vp_alpha_sigma(t[..., None], schedule)
    eps = sigma * (z - alpha * mu) / (alpha ** 2 * sig ** 2 + sigma ** 2)  # E[eps | z]
    x0 = (z - sigma * eps) / alpha
    return eps if prediction == "eps" else alpha * eps - sigma * x0

  velocity = objectives.vp_as_flow_velocity(vp_model, prediction, schedule)
  x = jnp.linspace(-2, 2, 6).reshape(1, 6, 1)
  s = jnp.linspace(0.05, 0.95, 6)[None]
  np.testing.assert_allclose(velocity(x, s), exact_velocity(mu, sig)(x, s), atol=2e-4)


def test_timestep_shift():
  t = jnp.linspace(0.0, 1.0, 11)
  np.testing.assert_allclose(objectives.shifted_levels(t, 1.0), t, atol=1e-7)
  shifted = objectives.shifted_levels(t, 3.0)
  assert shifted[0] == 0.0 and shifted[-1] == 1.0 and np.all(shifted[1:-1] > t[1:-1])
  # A shift adds log(shift) to the logit.
  logit = lambda u: np.log(u / (1 - u))
  np.testing.assert_allclose(logit(shifted[1:-1]) - logit(t[1:-1]), np.log(3.0), atol=1e-5)
  assert objectives.shift_for(256) == pytest.approx(np.exp(0.5))
  assert objectives.shift_for(4096) == pytest.approx(np.exp(1.15))
  assert objectives.shift_for(256) < objectives.shift_for(1024) < objectives.shift_for(16384)
  u = objectives.sample_timesteps(jax.random.key(0), (4000,), kind="uniform", shift=3.0)
  assert 0 < float(u.min()) and float(u.max()) < 1 and float(u.mean()) > 0.6
  with pytest.raises(ValueError, match="uniform"):
    objectives.sample_timesteps(jax.random.key(0), (3,), kind="beta")


def test_loss_weights_are_min_snr_in_x0_space():
  """x0_mse_factor is the true ratio of each prediction's squared error to the x0 error, so
  weight * factor = min(snr, gamma) for every parameterisation."""
  t = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])
  x0 = jax.random.normal(jax.random.key(0), (5, 4))
  eps = jax.random.normal(jax.random.key(1), (5, 4))
  x0_hat = x0 + 0.1 * jax.random.normal(jax.random.key(2), (5, 4))
  alpha, sigma = objectives.vp_alpha_sigma(t, "cosine")
  a, s = alpha[:, None], sigma[:, None]
  z = a * x0 + s * eps
  eps_hat = (z - a * x0_hat) / s
  x0_mse = jnp.mean((x0_hat - x0) ** 2, axis=1)
  snr = (alpha / sigma) ** 2
  for prediction, err in (("eps", eps_hat - eps), ("x0", x0_hat - x0),
                          ("v", (a * eps_hat - s * x0_hat) - (a * eps - s * x0))):
    np.testing.assert_allclose(jnp.mean(err ** 2, axis=1) / x0_mse,
                               objectives.x0_mse_factor(snr, prediction), rtol=1e-3)
  # Flow: u = eps - x0 at x_t = (1 - t) x0 + t eps.
  tf = t[:, None]
  xt = (1 - tf) * x0 + tf * eps
  u_hat = (xt - x0_hat) / tf
  flow_snr = ((1 - t) / t) ** 2
  np.testing.assert_allclose(jnp.mean((u_hat - (eps - x0)) ** 2, axis=1) / x0_mse,
                             objectives.x0_mse_factor(flow_snr, "flow"), rtol=1e-3)
  for prediction in objectives.PREDICTIONS:
    w = objectives.loss_weight(snr, "min_snr", prediction=prediction, gamma=5.0)
    np.testing.assert_allclose(w * objectives.x0_mse_factor(snr, prediction),
                               jnp.minimum(snr, 5.0), rtol=1e-5)
  np.testing.assert_allclose(objectives.loss_weight(snr, "uniform"), 1.0)
  soft = objectives.loss_weight(snr, "soft_min_snr", prediction="x0", gamma=5.0)
  assert np.all(soft <= jnp.minimum(snr, 5.0) + 1e-6)
  with pytest.raises(ValueError, match="min_snr"):
    objectives.loss_weight(snr, "p2")


# ----------------------------------------------------------------------------- guidance

def test_guidance_rescale_and_interval():
  k = jax.random.split(jax.random.key(0), 3)
  v_cond = jax.random.normal(k[0], (2, 3, 4, 4))
  v_uncond = 0.5 * jax.random.normal(k[1], (2, 3, 4, 4))
  x = jax.random.normal(k[2], (2, 3, 4, 4))
  t = jnp.array([[0.1, 0.5, 0.9]] * 2)
  plain = v_uncond + 5.0 * (v_cond - v_uncond)
  np.testing.assert_array_equal(guidance.guide(v_cond, v_uncond, scale=5.0), plain)
  for space in guidance.RESCALE_SPACES:
    np.testing.assert_allclose(
        guidance.guide(v_cond, v_uncond, scale=5.0, rescale=0.0, x=x, t=t, space=space), plain)
  full = guidance.guide(v_cond, v_uncond, scale=5.0, rescale=1.0)
  np.testing.assert_allclose(jnp.std(full, axis=(2, 3)), jnp.std(v_cond, axis=(2, 3)), rtol=1e-5)
  half = guidance.guide(v_cond, v_uncond, scale=5.0, rescale=0.5)
  np.testing.assert_allclose(half, 0.5 * (full + plain), atol=1e-5)
  # x0-space rescale: the x0 implied by the result has the conditional x0's per-frame std.
  x0_full = x - t[..., None, None] * guidance.guide(v_cond, v_uncond, scale=5.0, rescale=1.0,
                                                     x=x, t=t, space="x0")
  np.testing.assert_allclose(jnp.std(x0_full, axis=(2, 3)),
                             jnp.std(x - t[..., None, None] * v_cond, axis=(2, 3)), rtol=1e-4)
  # Scale 1 is the conditional model, rescaled or not.
  np.testing.assert_allclose(guidance.guide(v_cond, v_uncond, scale=1.0, rescale=0.7), v_cond,
                             atol=1e-5)
  # Interval: frames outside use the conditional prediction, frames inside plain CFG.
  g = guidance.guide(v_cond, v_uncond, scale=5.0, interval=(0.3, 0.7), t=t)
  np.testing.assert_array_equal(g[:, 0], v_cond[:, 0])
  np.testing.assert_array_equal(g[:, 2], v_cond[:, 2])
  np.testing.assert_allclose(g[:, 1], plain[:, 1])
  with pytest.raises(ValueError, match="interval"):
    guidance.guide(v_cond, v_uncond, scale=5.0, interval=(0.3, 0.7))


def test_guided_velocity_fn_skips_uncond_outside_interval():
  cond_fn = lambda x, t: x + 1.0
  nan_uncond = lambda x, t: jnp.full_like(x, jnp.nan)
  fn = jax.jit(guidance.guided_velocity_fn(cond_fn, nan_uncond, scale=4.0, interval=(0.2, 0.8)))
  x = jnp.ones((1, 2, 3))
  np.testing.assert_array_equal(fn(x, jnp.array([[0.9, 0.95]])), x + 1.0)
  assert np.all(np.isnan(fn(x, jnp.array([[0.5, 0.95]]))[:, 0]))
  both = guidance.guided_velocity_fn(cond_fn, lambda x, t: x, scale=3.0)
  np.testing.assert_allclose(both(x, jnp.array([[0.5, 0.5]])), x + 3.0)
  # It drives a sampler like any velocity_fn.
  v = exact_velocity(MU, SIGMA)
  one = guidance.guided_velocity_fn(v, v, scale=7.0, rescale=0.5)
  x1 = X1.reshape(3, 1, 3)
  np.testing.assert_allclose(samplers.sample("heun", one, x1, parallel_levels(8, 1)),
                             samplers.sample("heun", v, x1, parallel_levels(8, 1)), atol=1e-5)
