"""Sharpening (edge contrast, noise threshold) and classical upscaling."""
import numpy as np
import pytest
from scipy import ndimage

from vdm.post.sharpen import sharpen
from vdm.post.upscale import upscale


def _blurred_edge(noise=0.0, seed=0):
  """[2, 32, 64, 3]: a vertical step 0.3 -> 0.7 at column 32, Gaussian-blurred, plus noise."""
  x = np.where(np.arange(64) < 32, 0.3, 0.7)[None, None, :, None]
  x = np.broadcast_to(x, (2, 32, 64, 3)).astype(np.float64)
  x = ndimage.gaussian_filter1d(x, 2.0, axis=2, mode="nearest")
  rng = np.random.default_rng(seed)
  return (x + rng.normal(0, noise, (2, 32, 64, 1))).astype(np.float32)  # grey noise


def test_edge_contrast_goes_up():
  x = _blurred_edge()
  y = sharpen(x, amount=2.0, radius=2.0, threshold=0.005)
  slope = lambda v: np.abs(np.diff(v[:, :, 28:37, 0], axis=2)).max()
  assert slope(y) > 1.3 * slope(x)
  # Far from the edge nothing changes.
  np.testing.assert_allclose(y[:, :, :20], x[:, :, :20], atol=1e-6)


def test_noise_below_threshold_is_not_amplified():
  sigma = 0.01
  x = _blurred_edge(noise=sigma)
  y = sharpen(x, amount=2.0, radius=1.0, threshold=4 * sigma)
  flat = np.s_[:, :, :20]
  # Noise detail stays under the threshold, so flat regions come out (almost) untouched.
  assert y[flat].std() <= 1.02 * x[flat].std()
  assert np.abs(y[flat] - x[flat]).max() < sigma
  # Without a threshold the same noise would be amplified: the threshold is what protects it.
  z = sharpen(x, amount=2.0, radius=1.0, threshold=0.0)
  assert z[flat].std() > 1.5 * x[flat].std()


def test_sharpen_uint8_and_bad_arguments():
  frames = (_blurred_edge() * 255).astype(np.uint8)
  assert sharpen(frames).dtype == np.uint8
  with pytest.raises(ValueError, match="sharpen: amount"):
    sharpen(frames, amount=-1)
  with pytest.raises(ValueError, match="sharpen: radius"):
    sharpen(frames, radius=50)


def _smooth_clip(t=3, h=24, w=32, seed=0):
  rng = np.random.default_rng(seed)
  x = ndimage.gaussian_filter(rng.random((t, h * 2, w * 2, 3)), (0, 3, 3, 0))
  return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "lanczos5", "bilinear"])
def test_upscale_shapes_and_accuracy(method):
  hi = _smooth_clip()
  lo = hi[:, ::2, ::2] * 0.25 + hi[:, 1::2, ::2] * 0.25 + hi[:, ::2, 1::2] * 0.25 + hi[:, 1::2, 1::2] * 0.25
  up = upscale(lo, 2, method, chunk=2)
  assert up.shape == hi.shape and up.dtype == np.float32
  assert 0 <= up.min() and up.max() <= 1
  psnr = -10 * np.log10(((up - hi) ** 2).mean())
  assert psnr > 30, psnr
  # A constant image stays constant (kernels are normalised).
  const = np.full((2, 5, 7, 3), 0.4, np.float32)
  np.testing.assert_allclose(upscale(const, 3, method), 0.4, atol=1e-5)


def test_upscale_uint8_factor_and_bad_arguments():
  frames = np.zeros((5, 9, 11, 3), np.uint8)
  assert upscale(frames, 1.5).shape == (5, 14, 16, 3)
  with pytest.raises(ValueError, match=r"upscale: factor must be a number in \[1, 8\], got 0.5"):
    upscale(frames, 0.5)
  with pytest.raises(ValueError, match="upscale: method must be one of"):
    upscale(frames, 2, "nearest")
  with pytest.raises(ValueError, match=r"upscale: frames must be \[T, H, W, 3\]"):
    upscale(np.zeros((9, 11, 3), np.uint8), 2)
