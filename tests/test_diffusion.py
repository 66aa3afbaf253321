"""Flow-matching math against closed forms on Gaussian data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm.diffusion import interpolate, velocity_target
from vdm.diffusion.guidance import guide
from vdm.diffusion.objectives import sample_timesteps
from vdm.diffusion.samplers import euler
from vdm.generate.modes import noise_levels, parallel_levels, time_grid


def exact_velocity(mu, sigma):
  """E[noise - x0 | x_t] when x0 ~ N(mu, sigma^2) per dimension and noise ~ N(0, 1)."""
  def velocity(x, t):
    t = t.reshape(t.shape + (1,) * (x.ndim - t.ndim))
    mean_t = (1 - t) * mu
    var_t = (1 - t) ** 2 * sigma ** 2 + t ** 2
    return -mu + (t - (1 - t) * sigma ** 2) * (x - mean_t) / var_t
  return velocity


def test_interpolation_endpoints_and_target():
  x0, noise = jnp.ones((2, 3, 4)), jnp.full((2, 3, 4), -2.0)
  t = jnp.array([[0.0, 0.5, 1.0]] * 2)
  xt = interpolate(x0, noise, t)
  np.testing.assert_allclose(xt[:, 0], x0[:, 0])
  np.testing.assert_allclose(xt[:, 1], -0.5)
  np.testing.assert_allclose(xt[:, 2], noise[:, 2])
  np.testing.assert_allclose(velocity_target(x0, noise), -3.0)


def test_euler_reaches_the_gaussian_target():
  """Integrating the exact velocity from N(0,1) must land on N(mu, sigma^2)."""
  mu, sigma = 1.5, 0.4
  noise = jax.random.normal(jax.random.key(0), (20000, 3, 2))
  levels = jnp.asarray(parallel_levels(200, 3))
  x = euler(exact_velocity(mu, sigma), noise, levels)
  assert abs(float(x.mean()) - mu) < 0.01
  assert abs(float(x.std()) - sigma) < 0.01


def test_euler_error_shrinks_with_steps():
  """First-order method: halving the step roughly halves the error of the deterministic map."""
  mu, sigma = 1.0, 0.3
  x1 = jnp.linspace(-2, 2, 9).reshape(9, 1, 1)
  # The exact ODE map for Gaussians is affine: x0 = mu + sigma * x1.
  exact = mu + sigma * x1
  errors = []
  for steps in (10, 20, 40):
    x = euler(exact_velocity(mu, sigma), x1, jnp.asarray(parallel_levels(steps, 1)))
    errors.append(float(jnp.max(jnp.abs(x - exact))))
  assert errors[0] > errors[1] > errors[2]
  assert 1.6 < errors[0] / errors[1] < 2.5 and 1.6 < errors[1] / errors[2] < 2.5


def test_pinned_frames_are_untouched():
  """A frame whose level stays 0 across the matrix is never moved by the sampler."""
  levels = np.array(parallel_levels(5, 3))
  levels[:, 0] = 0.0
  x1 = jax.random.normal(jax.random.key(1), (2, 3, 4))
  x = euler(exact_velocity(0.0, 1.0), x1, jnp.asarray(levels))
  np.testing.assert_array_equal(x[:, 0], x1[:, 0])
  assert not np.allclose(x[:, 1], x1[:, 1])


def test_guidance_combination():
  cond, uncond = jnp.array([2.0]), jnp.array([1.0])
  np.testing.assert_allclose(guide(cond, uncond, scale=1.0), cond)
  np.testing.assert_allclose(guide(cond, uncond, scale=0.0), uncond)
  np.testing.assert_allclose(guide(cond, uncond, scale=3.0), 4.0)


def test_levels_and_grid():
  grid = time_grid(10, shift=3.0)
  assert grid[0] == 1.0 and grid[-1] == 0.0 and np.all(np.diff(grid) < 0)
  levels = noise_levels("parallel", steps=4, frames=3)
  assert levels.shape == (5, 3) and np.all(levels[:, 0:1] == levels)
  with pytest.raises(ValueError, match="mode"):
    noise_levels("sideways", steps=4, frames=3)
  t = sample_timesteps(jax.random.key(0), (1000,), kind="logit_normal")
  assert float(t.min()) > 0 and float(t.max()) < 1 and abs(float(t.mean()) - 0.5) < 0.03
  with pytest.raises(ValueError, match="uniform"):
    sample_timesteps(jax.random.key(0), (3,), kind="bogus")
