"""Distillation objectives (vdm/diffusion/distill.py) against closed forms on Gaussian data.

For x0 ~ N(mu, sigma^2) per dimension the teacher's velocity, the guided velocity and the ODE
map from any level to any other are known exactly (vdm/diffusion/gaussian.py), and so is the best
student of each recipe: its one-step map must be the exact ODE map (shortcut, ODE pairs), its
samples must have the data's distribution (DMD), and its velocity must be the guided one
(guidance distillation). Students are small functions v = a(features) x + b(features) with
(a, b) from an MLP, trained by the recipes' own loss functions for a few seconds.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vdm.diffusion import distill, samplers
from vdm.diffusion.flow import interpolate
from vdm.diffusion.gaussian import exact_velocity, flow_map
from vdm.diffusion.guidance import guide
from vdm.generate.modes import parallel_levels, time_grid

MU, SIGMA = 1.0, 0.3
X1 = jnp.linspace(-2.0, 2.0, 9).reshape(9, 1, 1)


def exact_map(x, t, s=0.0, mu=MU, sigma=SIGMA):
  """The ODE map of N(mu, sigma^2) data from level t to level s."""
  return flow_map(x, t, s, mu, sigma)


def affine_student(params, x, *features):
  """v = a x + b with (a, b) = MLP(features), each feature [B, T]; x [B, T, 1]."""
  f = jnp.stack([jnp.broadcast_to(jnp.asarray(a, jnp.float32), x.shape[:2]) for a in features],
                -1)
  h = jnp.tanh(f @ params["w1"] + params["b1"])
  ab = h @ params["w2"] + params["b2"]
  return ab[..., :1] * x + ab[..., 1:]


def guidance_student(params, x, t, w):
  """v = (a0 + w a1) x + (b0 + w b1) with (a0, a1, b0, b1) = MLP(t): a student whose family
  holds the guided velocity of Gaussians at every scale w [B]."""
  h = jnp.tanh(t[..., None] @ params["w1"] + params["b1"])
  a0, a1, b0, b1 = jnp.moveaxis(h @ params["w2"] + params["b2"], -1, 0)[..., None]
  w = jnp.reshape(w, (-1,) + (1,) * (x.ndim - 1))
  return (a0 + w * a1) * x + (b0 + w * b1)


def init_student(inputs, seed=0, hidden=32, outputs=2):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return dict(w1=jax.random.normal(k1, (inputs, hidden)) / np.sqrt(inputs),
              b1=jnp.zeros(hidden), w2=0.01 * jax.random.normal(k2, (hidden, outputs)),
              b2=jnp.zeros(outputs))


def fit(loss_fn, params, steps, lr=3e-3, seed=1):
  """Adam (cosine-decayed) on loss_fn(params, key); returns the params."""
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    grads = jax.grad(loss_fn)(params, key)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  key = jax.random.key(seed)
  for i in range(steps):
    params, opt = step(params, opt, jax.random.fold_in(key, i))
  return params


def data_batch(key, n=256):
  """x0 ~ N(MU, SIGMA^2), noise, uniform levels: x0, noise [n, 1, 1], t [n, 1]."""
  k = jax.random.split(key, 3)
  return (MU + SIGMA * jax.random.normal(k[0], (n, 1, 1)), jax.random.normal(k[1], (n, 1, 1)),
          jax.random.uniform(k[2], (n, 1)))


def test_shortcut_student_follows_the_exact_ode_map_in_one_to_four_steps():
  """Base (step 0 = the teacher) and self-consistency losses only: no target ever names the
  ODE map, yet the student's one-step jump from noise lands on it."""
  teacher = exact_velocity(MU, SIGMA)

  def loss(params, key):
    student = lambda x, t, d: affine_student(params, x, t, d)  # noqa: E731
    x0, noise, t = data_batch(key)
    k = jax.random.split(jax.random.fold_in(key, 1), 2)
    x = interpolate(x0, noise, t)
    # Half the self-consistency rows start at level 1, as sampling does; steps of t / 2^j.
    ts = jnp.where(jax.random.bernoulli(k[0], 0.5, t.shape), 1.0, t)
    d = ts * 2.0 ** -jax.random.randint(k[1], t.shape, 0, 4).astype(jnp.float32)
    xs = interpolate(x0, noise, ts)
    return (distill.shortcut_base_loss(student, teacher, x[:192], t[:192])
            + distill.shortcut_self_loss(student, xs[192:], ts[192:], d[192:]))

  params = fit(loss, init_student(2), 3000)
  student = lambda x, t, step: affine_student(params, x, t, step)  # noqa: E731
  for steps, tol in ((1, 0.05), (2, 0.05), (4, 0.05)):
    x = samplers.sample("shortcut", student, X1, parallel_levels(steps, 1))
    np.testing.assert_allclose(x, exact_map(X1, 1.0), atol=tol, err_msg=f"{steps} steps")
  # Told step 0 the student is the teacher (the base loss), not a jump: within a std of x_t.
  x = jnp.linspace(0.0, 1.0, 5).reshape(5, 1, 1)
  t = jnp.full((5, 1), 0.5)
  np.testing.assert_allclose(student(x, t, 0.0 * t), teacher(x, t), atol=0.05)


def test_ode_trajectory_is_the_exact_map_at_the_recorded_levels():
  grid = time_grid(256, shift=3.0)
  traj = distill.ode_trajectory(exact_velocity(MU, SIGMA), X1, grid, 64)
  assert traj.shape == (5,) + X1.shape
  np.testing.assert_array_equal(traj[0], X1)
  for i, level in enumerate(grid[::64]):  # Euler's error at 256 steps: ~0.01
    np.testing.assert_allclose(traj[i], exact_map(X1, 1.0, level), atol=0.015)
  # Recording changes nothing: the end is plain Euler over the whole grid.
  end = samplers.euler(exact_velocity(MU, SIGMA), X1, jnp.asarray(grid, jnp.float32)[:, None])
  np.testing.assert_allclose(traj[-1], end, atol=1e-6)


def test_ode_pair_student_maps_each_level_to_the_ode_end():
  """Regressing the trajectories' clean ends from their points at 4 levels: one step of the
  student is the exact ODE map; its 4-step consistency samples have the data's distribution."""
  grid = time_grid(256, shift=3.0)
  levels = jnp.asarray(grid[::64][:-1], jnp.float32)  # the student's 4 levels
  noise = jax.random.normal(jax.random.key(0), (2048, 1, 1))
  traj = distill.ode_trajectory(exact_velocity(MU, SIGMA), noise, grid, 64)  # [5, N, 1, 1]

  def loss(params, key):
    rows = jax.random.randint(key, (256,), 0, noise.shape[0])
    index = jax.random.randint(jax.random.fold_in(key, 1), (256, 1), 0, 4)
    x = traj[index[:, 0], rows]
    t = levels[index]
    return distill.ode_regression_loss(affine_student(params, x, t), x, t, traj[-1, rows])

  params = fit(loss, init_student(1), 2000)
  student = lambda x, t: affine_student(params, x, t)  # noqa: E731
  one = samplers.sample("consistency", student, X1, parallel_levels(1, 1), rng=jax.random.key(0))
  np.testing.assert_allclose(one, exact_map(X1, 1.0), atol=0.03)
  z = jax.random.normal(jax.random.key(3), (20000, 1, 1))
  x = samplers.sample("consistency", student, z,
                      jnp.broadcast_to(jnp.append(levels, 0.0)[:, None], (5, 1)),
                      rng=jax.random.key(4))
  assert abs(float(x.mean()) - MU) < 0.02 and abs(float(x.std()) - SIGMA) < 0.02


def test_dmd_moves_a_one_step_generator_to_the_data_distribution():
  """A generator G(z) = a z + b updated only along the DMD direction between the exact real
  score and the exact score of its own samples N(b, a^2) reaches N(MU, SIGMA^2)."""
  real = exact_velocity(MU, SIGMA)

  def loss(params, key):
    k = jax.random.split(key, 3)
    z = jax.random.normal(k[0], (512, 1, 1))
    x0 = params["a"] * z + params["b"]
    fake = exact_velocity(jax.lax.stop_gradient(params["b"]),
                          jax.lax.stop_gradient(jnp.abs(params["a"])))
    t = jax.random.uniform(k[1], (512, 1), minval=0.02, maxval=0.98)
    x0_real, x0_fake = distill.dmd_scores(real, fake, x0, jax.random.normal(k[2], x0.shape), t)
    return distill.dmd_loss(x0, x0_real, x0_fake)

  params = fit(loss, dict(a=jnp.float32(1.0), b=jnp.float32(-1.0)), 1500, lr=2e-2)
  assert abs(abs(float(params["a"])) - SIGMA) < 0.02, params
  assert abs(float(params["b"]) - MU) < 0.02, params


def test_dmd_direction_is_zero_when_the_scores_agree_and_points_to_the_data():
  x0 = jnp.array([[[2.0]], [[-1.0]]])
  same = distill.dmd_direction(x0, x0 - 0.5, x0 - 0.5)
  np.testing.assert_array_equal(same, jnp.zeros_like(x0))
  # The fake score sees the sample where it is, the real one nearer the data: the direction
  # (to subtract) points away from the data, and is scaled by |x0 - x0_real|.
  direction = distill.dmd_direction(x0, x0_real=x0 - 1.0, x0_fake=x0)
  np.testing.assert_allclose(direction, jnp.ones_like(x0))
  grad = jax.grad(lambda x: distill.dmd_loss(x, x0 - 1.0, x))(x0)
  np.testing.assert_allclose(grad, direction / x0.size)


def test_fake_score_loss_is_minimised_by_the_exact_velocity_of_the_samples():
  """Flow matching on a generator's samples: the exact velocity of their distribution scores
  lower than any other affine velocity near it."""
  key = jax.random.key(5)
  x0 = 0.5 + 0.2 * jax.random.normal(key, (20000, 1, 1))
  noise = jax.random.normal(jax.random.fold_in(key, 1), x0.shape)
  t = jax.random.uniform(jax.random.fold_in(key, 2), (20000, 1))
  exact = distill.fake_score_loss(exact_velocity(0.5, 0.2), x0, noise, t)
  for mu, sigma in ((0.6, 0.2), (0.5, 0.3), (0.4, 0.15)):
    assert exact < distill.fake_score_loss(exact_velocity(mu, sigma), x0, noise, t)


def test_guidance_student_matches_the_guided_teacher_at_every_scale():
  """Conditional N(1, 0.5^2), unconditional N(0, 1): the student, given w, regresses the guided
  velocity; its ODE (one call a step) lands where classifier-free guidance (two calls) does."""
  cond, uncond = exact_velocity(1.0, 0.5), exact_velocity(0.0, 1.0)

  def loss(params, key):
    _, noise, t = data_batch(key)
    x = (1 - t[..., None]) * (0.5 + 0.5 * jax.random.normal(jax.random.fold_in(key, 3),
                                                             noise.shape)) + t[..., None] * noise
    w = jax.random.uniform(jax.random.fold_in(key, 4), (noise.shape[0],), minval=1.0,
                           maxval=3.0)
    student = lambda x, t, w: guidance_student(params, x, t, w)  # noqa: E731
    guided = lambda x, t, w: guide(cond(x, t), uncond(x, t),  # noqa: E731
                                   scale=w.reshape((-1,) + (1,) * (x.ndim - 1)))
    return distill.guidance_distillation_loss(student, guided, x, t, w)

  params = fit(loss, init_student(1, hidden=64, outputs=4), 3000, lr=1e-2)
  levels = parallel_levels(32, 1)
  for w in (1.0, 2.0, 3.0):
    guided = lambda x, t: guide(cond(x, t), uncond(x, t), scale=w)  # noqa: E731
    student = lambda x, t: guidance_student(params, x, t, jnp.full(x.shape[:1], w))  # noqa
    np.testing.assert_allclose(samplers.sample("euler", student, X1, levels),
                               samplers.sample("euler", guided, X1, levels), atol=0.03,
                               err_msg=f"guidance {w}")
