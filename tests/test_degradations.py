"""The upscaler's training degradations (vdm/post/degradations.py) against standard tools: each
downscaling kernel against PIL's resize, the blur against scipy's Gaussian filter, the JPEG-like
quantiser's error against PIL's JPEG encoder; the random chain is deterministic per seed; vdm's
bicubic upscale matches PIL's within 0.05 dB; the config's `degrade` section is checked."""
import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from vdm.config import ConfigError, config_from_json, load_config
from vdm.config.sr import DOWNSCALE_KERNELS
from vdm.eval import real_degradations
from vdm.eval.metrics.image import psnr
from vdm.post import degradations
from vdm.post.upscale import upscale


@pytest.fixture(scope="module")
def photo():
  """A real photo crop, uint8 [96, 96, 3] (skimage's astronaut: face, suit, flag)."""
  return skimage.data.astronaut()[100:196, 150:246]


def as_clip(image: np.ndarray) -> jax.Array:
  return jnp.asarray(image, jnp.float32)[None, None] / 255.0


def test_every_config_kernel_has_a_downscale():
  assert tuple(degradations.KERNELS) == DOWNSCALE_KERNELS


@pytest.mark.parametrize("kernel", DOWNSCALE_KERNELS)
@pytest.mark.parametrize("factor", [2, 4])
def test_downscale_matches_pil(photo, kernel, factor):
  ours = degradations.quantise(degradations.downscale(as_clip(photo), factor, kernel))
  ours = np.round(np.asarray(ours[0, 0]) * 255.0)
  pil = real_degradations.DEGRADATIONS[kernel](photo[None], factor)[0].astype(np.float64)
  assert ours.shape == pil.shape == (96 // factor, 96 // factor, 3)
  error = np.abs(ours - pil)
  # PIL resizes in fixed point: one level of rounding apart. Lanczos's wide negative lobes meet
  # the edge differently (PIL renormalises the cut kernel); away from it, within 2 levels.
  interior = error[3:-3, 3:-3]
  assert interior.max() <= (2.0 if kernel == "lanczos" else 1.0), interior.max()
  assert error.mean() < 0.5
  # A wrong kernel is far further apart than that (e.g. area vs Lanczos).
  other = "lanczos" if kernel == "area" else "area"
  wrong = np.asarray(degradations.quantise(degradations.downscale(as_clip(photo), factor,
                                                                  other))[0, 0]) * 255.0
  assert np.abs(wrong - pil).mean() > 2 * error.mean()


def test_gaussian_blur_matches_scipy_per_clip(photo):
  from scipy.ndimage import gaussian_filter
  clip = jnp.concatenate([as_clip(photo), as_clip(photo)])  # [2, 1, H, W, 3]
  out = np.asarray(jax.jit(degradations.gaussian_blur)(clip, jnp.array([0.0, 1.0])))
  np.testing.assert_allclose(out[0], np.asarray(clip[0]), atol=1e-6)  # sigma 0: untouched
  reference = gaussian_filter(photo.astype(np.float64) / 255.0, sigma=(1.0, 1.0, 0.0),
                              mode="nearest", truncate=3.0)
  np.testing.assert_allclose(out[1, 0], reference, atol=1e-4)


@pytest.mark.parametrize("quality", [30, 75, 95])
@pytest.mark.parametrize("subsampling", [0, 2], ids=["4:4:4", "4:2:0"])
def test_jpeg_like_error_matches_pil_jpeg(photo, quality, subsampling):
  buffer = io.BytesIO()
  # Same recipe as jpeg_like: baseline tables scaled by quality, chroma at full (PIL's
  # subsampling=0) or half resolution (2, PIL's default).
  Image.fromarray(photo).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
  pil = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), np.float64)
  ours = np.asarray(jax.jit(degradations.jpeg_like)(as_clip(photo), jnp.array([float(quality)]),
                                                    jnp.array([subsampling == 2])))
  ours = ours[0, 0] * 255.0
  pil_error = np.abs(pil - photo).mean()
  ours_error = np.abs(ours - photo).mean()
  # The same loss of detail (within 5 %, and the quality ordering below), as PIL differs only in
  # its integer DCT and rounding.
  assert abs(ours_error - pil_error) < 0.05 * pil_error, (ours_error, pil_error)
  assert np.abs(ours - pil).mean() < 1.5  # levels: rounding apart, pixel by pixel
  if subsampling == 2:  # and half-resolution chroma loses more than full
    full = np.asarray(jax.jit(degradations.jpeg_like)(as_clip(photo),
                                                      jnp.array([float(quality)])))[0, 0] * 255
    assert ours_error > np.abs(full - photo).mean()


def test_jpeg_like_loses_more_at_lower_quality_and_is_differentiable(photo):
  clip = jnp.concatenate([as_clip(photo)] * 3)  # three clips, one quality each
  compressed = jax.jit(degradations.jpeg_like)(clip, jnp.array([10.0, 50.0, 95.0]))
  errors = np.abs(np.asarray(compressed - clip)).mean(axis=(1, 2, 3, 4))
  assert errors[0] > errors[1] > errors[2] > 0
  grad = jax.jit(jax.grad(lambda x: degradations.jpeg_like(x, jnp.array([50.0])).sum()))(
      clip[:1])
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).sum()) > 0


def test_random_degrade_is_deterministic_per_seed_and_varies_per_clip(photo):
  hr = jnp.concatenate([as_clip(photo[:32, :32])] * 2, axis=1)  # one clip of 2 frames
  hr = jnp.concatenate([hr] * 6)  # 6 identical clips: any difference is the random chain
  chain = jax.jit(functools.partial(degradations.random_degrade, factor=2,
                                    kernels=DOWNSCALE_KERNELS, blur=1.0, noise=2.0, jpeg=0.5,
                                    jpeg_quality=30.0, chroma=0.75))
  a = chain(jax.random.key(0), hr)
  b = chain(jax.random.key(0), hr)
  c = chain(jax.random.key(1), hr)
  assert a.shape == (6, 2, 16, 16, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len({np.asarray(clip).tobytes() for clip in a}) == 6  # a chain per clip
  levels = np.asarray(a) * 255.0
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # 8-bit values
  # Nothing drawn (one kernel, no blur, noise or JPEG): exactly that kernel's downscale.
  plain = degradations.random_degrade(jax.random.key(0), hr, 2, kernels=("area",), blur=0.0,
                                      noise=0.0, jpeg=0.0, jpeg_quality=30.0)
  np.testing.assert_array_equal(plain, degradations.quantise(degradations.downscale(hr, 2,
                                                                                     "area")))
  # clean = 1: blur and JPEG are drawn but never applied; clean = 0.5: some clips only.
  heavy = functools.partial(degradations.random_degrade, factor=2, kernels=("area",), blur=2.0,
                            noise=0.0, jpeg=1.0, jpeg_quality=10.0)
  np.testing.assert_array_equal(heavy(jax.random.key(0), hr, clean=1.0), plain)
  untouched = [np.array_equal(clip, plain[0]) for clip in heavy(jax.random.key(1), hr, clean=0.5)]
  assert 0 < sum(untouched) < len(untouched), untouched


def test_vdm_bicubic_upscale_matches_pil_within_a_twentieth_of_a_db(photo):
  # The bar: vdm's `upscale(f)` (bicubic, Keys a = -0.5) against PIL's bicubic on a real
  # photo downscaled by area averaging, within 0.05 dB of PSNR against the original.
  for factor in (2, 4):
    lr = real_degradations.degrade_with("area", photo[None], factor)
    ours = upscale(lr, factor)
    pil = real_degradations.pil_bicubic(lr, factor)
    gap = psnr(photo, ours[0], data_range=255.0) - psnr(photo, pil[0], data_range=255.0)
    assert abs(float(gap)) < 0.05, (factor, float(gap))


def test_degrade_section_is_checked_and_old_models_keep_their_input():
  config = load_config("configs/sr.py:2", ["degrade.kernels=('area', 'lanczos')"])
  assert tuple(config.degrade.kernels) == ("area", "lanczos")
  for bad in ["degrade.kernels=('box',)", "degrade.kernels=()", "degrade.blur=9.0",
              "degrade.jpeg=1.5", "degrade.jpeg_quality=0.0", "degrade.chroma=-0.5",
              "degrade.shuffle=2.0", "degrade.clean=1.5"]:
    with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", "\\.")):
      load_config("configs/sr.py:2", [bad])
  # A model directory written before the section reads as its own input: bicubic only, no blur,
  # no JPEG (the section's legacy values).
  old = load_config("configs/sr.py:2").to_dict()
  del old["degrade"]
  partial = dict(old, degrade=dict(kernels=["area"], blur=1.0, jpeg=0.5, jpeg_quality=30.0))
  assert config_from_json(json.dumps(partial)).degrade.chroma == 0.0  # before 4:2:0 existed
  upgraded = config_from_json(json.dumps(old))
  assert tuple(upgraded.degrade.kernels) == ("bicubic",)
  assert upgraded.degrade.blur == 0.0 and upgraded.degrade.jpeg == 0.0
  assert upgraded.degrade.chroma == 0.0 and upgraded.degrade.shuffle == 0.0
  assert upgraded.degrade.clean == 0.0
