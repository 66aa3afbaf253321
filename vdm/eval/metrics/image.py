"""Per-image reconstruction quality: PSNR and SSIM (Wang et al., 2004), in jax.numpy.

SSIM uses the standard Gaussian window (sigma 1.5, 11 taps), population statistics and
K1 = 0.01, K2 = 0.03, averaged over the region where the window fits inside the image and then
over channels. That equals `skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=L, channel_axis=-1)` and the SSIM used by
the OpenSTL video-prediction benchmarks.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_SIGMA = 1.5
_RADIUS = 5  # skimage: int(truncate 3.5 * sigma + 0.5)


def _gaussian_taps() -> np.ndarray:
  x = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / _SIGMA) ** 2)
  return w / w.sum()


_TAPS = _gaussian_taps()  # [11]


def _filter_valid(x: jnp.ndarray) -> jnp.ndarray:
  """Separable Gaussian filter of [..., H, W, C], keeping only where the window fits:
  [..., H - 10, W - 10, C]. Those are exactly the pixels skimage averages (it filters with
  reflect padding and then crops the padded border)."""
  n = len(_TAPS)
  h, w = x.shape[-3], x.shape[-2]
  x = sum(float(t) * x[..., i:i + h - n + 1, :, :] for i, t in enumerate(_TAPS))
  return sum(float(t) * x[..., :, i:i + w - n + 1, :] for i, t in enumerate(_TAPS))


def ssim(a, b, *, data_range: float = 1.0) -> jnp.ndarray:
  """Mean SSIM of images a, b [..., H, W, C] (H, W >= 11) -> [...] (float32).

  data_range: max - min of the pixel scale (1.0 for [0, 1] images, 255 for uint8).
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  if a.ndim < 3 or min(a.shape[-3:-1]) < len(_TAPS):
    raise ValueError(f"images must be [..., H, W, C] with H, W >= {len(_TAPS)}, got {a.shape}")
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  mu_a, mu_b = _filter_valid(a), _filter_valid(b)
  # Variances as E[x^2] - E[x]^2, as the reference formula; float32 is enough at these ranges.
  var_a = _filter_valid(a * a) - mu_a**2
  var_b = _filter_valid(b * b) - mu_b**2
  cov = _filter_valid(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return s.mean(axis=(-3, -2, -1))


def psnr(a, b, *, data_range: float = 1.0) -> jnp.ndarray:
  """PSNR in dB of images a, b [..., H, W, C] -> [...]; inf where they are identical."""
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  mse = jnp.mean((a - b) ** 2, axis=(-3, -2, -1))
  return 10.0 * jnp.log10(data_range**2 / mse)
