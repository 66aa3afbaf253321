"""Blind temporal consistency (vdm.post.steady): still pixels follow the reference's change,
moving pixels keep the per-frame result, and the detail layer relaxes at the stated rate."""
import numpy as np
import pytest

from vdm.post.steady import follow_reference


def _clip(t=6, h=8, w=10, seed=0):
  return np.random.default_rng(seed).random((t, h, w, 3)).astype(np.float32)


def test_still_pixels_change_exactly_as_the_reference_does():
  rng = np.random.default_rng(0)
  # Reference: a still image with a slow, tiny brightness drift; result: that plus fresh noise in
  # every frame (what sharpening the input's noise does).
  ref = np.clip(0.4 + 0.3 * _clip(1)[0] + 0.001 * np.arange(8)[:, None, None, None], 0, 1)
  pred = np.clip(ref + 0.03 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
  out = follow_reference(pred, ref.astype(np.float32), strength=1.0, tolerance=0.05)
  np.testing.assert_array_equal(out[0], pred[0])
  # w = exp(-(0.001 / 0.05)^2) = 0.9996: the result's noise (0.03) leaks in at ~1e-5.
  np.testing.assert_allclose(np.diff(out, axis=0), np.diff(ref, axis=0), atol=1e-4)
  assert np.abs(np.diff(pred, axis=0)).mean() > 0.02  # there was flicker to remove


def test_moving_pixels_keep_the_per_frame_result():
  ref, pred = _clip(seed=1), _clip(seed=2)  # every pixel changes by ~0.33 on average
  moving = np.abs(np.diff(ref, axis=0)).max(-1) > 0.1  # [T-1, H, W]
  out = follow_reference(pred, ref, strength=1.0, tolerance=0.01)
  np.testing.assert_allclose(out[1:][moving], pred[1:][moving], atol=1e-6)


def test_smooth_ignores_the_references_own_noise_and_keeps_motion():
  rng = np.random.default_rng(4)
  # A still scene whose reference flickers with fresh per-pixel noise in every frame (sensor
  # noise, codec re-quantisation), and a per-frame result with flicker of its own.
  still = np.clip(0.4 + 0.2 * _clip(1, 24, 24, seed=5), 0, 1)
  ref = np.clip(still + 0.01 * rng.standard_normal((8, 24, 24, 3)), 0, 1).astype(np.float32)
  pred = np.clip(ref + 0.03 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
  flicker = lambda x: np.abs(np.diff(x, axis=0)).mean()
  plain = follow_reference(pred, ref, tolerance=0.03)
  smoothed = follow_reference(pred, ref, tolerance=0.03, smooth=2.0)
  # Unblurred, the noise (|change| ~ 0.014 ~ tolerance / 2) lowers w, so pred's flicker leaks
  # in; blurred by sigma 2 it is ~1/7 as large, w ~ 1, and only the blurred noise is followed.
  assert flicker(smoothed) < 0.25 * flicker(ref) < flicker(plain)
  # A pattern that moves (every pixel changes by ~0.33 after the blur too) is the result's.
  moving_ref, moving_pred = _clip(seed=6, h=24, w=24), _clip(seed=7, h=24, w=24)
  moving_ref = np.repeat(np.repeat(moving_ref[:, ::4, ::4], 4, 1), 4, 2)  # 4 px blocks: survive
  out = follow_reference(moving_pred, moving_ref, tolerance=0.01, smooth=0.5)
  np.testing.assert_allclose(out[1:], moving_pred[1:], atol=0.02)


def test_detail_relaxes_geometrically_towards_the_result():
  # Constant reference; the result jumps from q (frame 0) to p: O_t = p + s^t (q - p).
  s, q, p = 0.7, 0.2, 0.6
  ref = np.full((6, 2, 2, 3), 0.5, np.float32)
  pred = np.full_like(ref, p)
  pred[0] = q
  out = follow_reference(pred, ref, strength=s)
  expected = p + s ** np.arange(6) * (q - p)
  np.testing.assert_allclose(out[:, 0, 0, 0], expected, atol=1e-6)


def test_chunks_dtype_and_strength_zero():
  ref = _clip(t=7, seed=3)
  pred = 0.98 * ref + 0.01
  ref[3:] = ref[3]  # still from frame 3 on
  whole = follow_reference(pred, ref, strength=0.9, tolerance=0.02, chunk=16)
  np.testing.assert_array_equal(follow_reference(pred, ref, strength=0.9, tolerance=0.02,
                                                 chunk=2), whole)
  np.testing.assert_array_equal(follow_reference(pred, ref, strength=0.0), pred)
  as_uint8 = follow_reference((pred * 255).round().astype(np.uint8),
                              (ref * 255).round().astype(np.uint8), strength=0.9, tolerance=0.02)
  assert as_uint8.dtype == np.uint8 and np.abs(as_uint8 / 255.0 - whole).max() < 3 / 255


@pytest.mark.parametrize("kwargs, message", [
    (dict(strength=1.5), "steady: strength must be a number in \\[0, 1\\]"),
    (dict(tolerance=0.0), "steady: tolerance"),
    (dict(smooth=-1.0), "steady: smooth"),
])
def test_bad_arguments_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    follow_reference(_clip(), _clip(), **kwargs)


def test_shapes_must_match():
  with pytest.raises(ValueError, match="differ in shape"):
    follow_reference(_clip(t=4), _clip(t=5))
