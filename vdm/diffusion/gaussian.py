"""Closed forms of rectified flow on Gaussian data, the references the samplers and the
distillation objectives are tested against (tests/test_samplers.py, tests/test_distill.py).

For x0 ~ N(mu, sigma^2) per dimension and noise ~ N(0, 1), x_t = (1 - t) x0 + t noise is
N((1 - t) mu, s(t)^2) with s(t)^2 = (1 - t)^2 sigma^2 + t^2, the velocity E[noise - x0 | x_t] is
affine in x_t, and the ODE map from level t to level u is x -> (1 - u) mu + s(u) / s(t)
(x - (1 - t) mu).
"""
from __future__ import annotations

import jax.numpy as jnp


def exact_velocity(mu, sigma):
  """velocity(x [B, T, ...], t [B, T]) = E[noise - x0 | x_t = x] for N(mu, sigma^2) data."""
  def velocity(x, t):
    t = t.reshape(t.shape + (1,) * (x.ndim - t.ndim))
    var_t = (1 - t) ** 2 * sigma ** 2 + t ** 2
    return -mu + (t - (1 - t) * sigma ** 2) * (x - (1 - t) * mu) / var_t
  return velocity


def flow_map(x, t, u, mu, sigma):
  """The exact ODE map of N(mu, sigma^2) data from level t to level u (arrays broadcast)."""
  std = lambda s: jnp.sqrt((1 - s) ** 2 * sigma ** 2 + s ** 2)  # noqa: E731
  return (1 - u) * mu + std(u) * (x - (1 - t) * mu) / std(t)
