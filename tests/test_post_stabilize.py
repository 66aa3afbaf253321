"""Stabilization on a textured clip with a known pan plus injected camera shake."""
import numpy as np
import pytest
from scipy import ndimage

from vdm.post.stabilize import estimate_motion, stabilize

T, H, W = 40, 64, 96


def _texture(seed=0, size=(200, 300)):
  rng = np.random.default_rng(seed)
  tex = ndimage.gaussian_filter(rng.random(size + (3,)), (2.0, 2.0, 0))
  tex = (tex - tex.min()) / (tex.max() - tex.min())
  return tex.astype(np.float32)


def _render(tex, cam):
  """Frames [T, H, W, 3]: frame t shows tex at offset cam[t] = (x, y) (sub-pixel, cubic)."""
  ys, xs = np.mgrid[:H, :W].astype(np.float64)
  out = []
  for cx, cy in cam:
    out.append(np.stack([ndimage.map_coordinates(tex[..., c], [ys + 60 + cy, xs + 60 + cx],
                                                 order=3, mode="nearest") for c in range(3)], -1))
  return np.clip(np.stack(out), 0, 1).astype(np.float32)


def _camera(seed=1, shake=2.0):
  rng = np.random.default_rng(seed)
  t = np.arange(T, dtype=np.float64)
  pan = np.stack([1.0 * t, 0.25 * t], -1)  # intended: right and slightly down
  return pan, pan + rng.normal(0.0, shake, (T, 2))


def _jitter(path):
  """RMS second difference of a path [T, 2]: zero for any steady pan, large for shake."""
  return np.sqrt((np.diff(path, 2, axis=0) ** 2).sum(-1).mean())


def test_estimate_motion_matches_known_shifts():
  tex = _texture()
  _, cam = _camera()
  shifts = estimate_motion(_render(tex, cam[:12]))
  # Camera moving +x makes the content move -x.
  np.testing.assert_allclose(shifts, -np.diff(cam[:12], axis=0), atol=0.15)


def test_shake_removed_and_pan_kept():
  tex = _texture()
  pan, cam = _camera()
  frames = _render(tex, cam)
  out = stabilize(frames, smoothing=8, border="edge", chunk=16)
  assert out.shape == frames.shape and out.dtype == frames.dtype
  # Background path before and after, with the estimator checked above (error ~0.01 px).
  before = -np.concatenate([[[0, 0]], np.cumsum(estimate_motion(frames), 0)])
  after = -np.concatenate([[[0, 0]], np.cumsum(estimate_motion(out), 0)])
  jitter_before, jitter_after = _jitter(before), _jitter(after)
  assert jitter_after <= 0.2 * jitter_before, (jitter_before, jitter_after)
  # The pan survives: mean velocity within 0.05 px/frame of the intended one.
  vel = np.polyfit(np.arange(T), after, 1)[0]
  np.testing.assert_allclose(vel, [1.0, 0.25], atol=0.05)
  # ... and the output follows the intended path, not the shaken one (shake is up to ~5 px).
  deviation = after - (pan - pan[0])
  assert np.abs(deviation - deviation.mean(0)).max() < 1.5


def test_crop_border_keeps_shape_and_steady_clip():
  tex = _texture()
  pan, cam = _camera(shake=1.0)
  frames = (_render(tex, cam) * 255).round().astype(np.uint8)
  out = stabilize(frames, smoothing=8, border="crop")
  assert out.shape == frames.shape and out.dtype == np.uint8
  # A clip that does not move is left as it is.
  still = np.repeat(frames[:1], 6, axis=0)
  assert np.abs(stabilize(still).astype(int) - still).max() <= 1


@pytest.mark.parametrize("kwargs, field", [(dict(smoothing=0), "smoothing"),
                                           (dict(border="zoom"), "border"),
                                           (dict(max_shift=0.9), "max_shift")])
def test_bad_arguments(kwargs, field):
  with pytest.raises(ValueError, match=f"stabilize: {field}"):
    stabilize(np.zeros((3, 8, 8, 3), np.uint8), **kwargs)
