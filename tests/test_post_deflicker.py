"""Deflicker on a synthetic clip with injected flicker and noise, against the clip's truth."""
import numpy as np
import pytest

from vdm.data import simple
from vdm.post.deflicker import deflicker

T, H, W = 48, 64, 64


def _clip():
  spec = simple.sample_spec(np.random.default_rng(3), H, W, T, "train")
  video, truth = simple.render_clip(spec, H, W, T)
  # Compress the range so flicker gains up to +-15 % never clip: clipping would destroy the
  # information deflicker needs, which is not what is tested here.
  clean = video.astype(np.float32) / 255 * 0.7 + 0.15
  obj = simple.PALETTE[spec.color] / 255 * 0.7 + 0.15
  bg = simple.PALETTE[spec.background] / 255 * 0.7 + 0.15
  return clean, truth, obj, bg


def _inject(clean, seed=0):
  rng = np.random.default_rng(seed)
  gains = 1 + rng.uniform(-0.15, 0.15, (T, 1, 1, 1)) + rng.uniform(-0.04, 0.04, (T, 1, 1, 3))
  noisy = clean * gains + rng.normal(0, 0.02, clean.shape)
  return np.clip(noisy, 0, 1).astype(np.float32)


def _positions(frames, obj, bg):
  """Object centroid per frame [T, 2] as (x, y), by nearest of the two colours."""
  d_obj = np.linalg.norm(frames - obj, axis=-1)
  d_bg = np.linalg.norm(frames - bg, axis=-1)
  mask = d_obj < d_bg
  ys, xs = np.mgrid[:H, :W]
  n = mask.sum((1, 2))
  return np.stack([(mask * xs).sum((1, 2)) / n, (mask * ys).sum((1, 2)) / n], -1)


def _flicker(frames, background):
  """Mean |frame-to-frame change| of the background's mean colour."""
  m = np.stack([f[b].mean(0) for f, b in zip(frames, background)])
  return np.abs(np.diff(m, axis=0)).mean()


def test_flicker_drops_80_percent_and_object_stays_within_1px():
  clean, truth, obj, bg = _clip()
  flickered = _inject(clean)
  out = deflicker(flickered, strength=0.5, chunk=16)
  assert out.shape == flickered.shape and out.dtype == np.float32
  ys, xs = np.mgrid[:H, :W]
  c = truth["center"]
  # Background = pixels well away from the object in every frame (no shape edge effects).
  far = np.hypot(xs[None] - c[:, 0, None, None], ys[None] - c[:, 1, None, None]) > truth["radius"] * 1.5 + 2
  before, after = _flicker(flickered, far), _flicker(out, far)
  assert after <= 0.2 * before, (before, after)
  err = np.abs(_positions(out, obj, bg) - c).max()
  assert err <= 1.0, err
  # Temporal noise on the static background is reduced too.
  noise_before = np.diff(flickered, axis=0)[far[1:]].std()
  noise_after = np.diff(out, axis=0)[far[1:]].std()
  assert noise_after < 0.6 * noise_before, (noise_before, noise_after)


def test_clean_clip_and_fade_are_kept():
  clean, _, _, _ = _clip()
  out = deflicker(clean, strength=1.0)
  assert np.abs(out - clean).max() < 2 / 255
  fade = clean * np.linspace(1.0, 0.6, T, dtype=np.float32)[:, None, None, None]
  out = deflicker(fade, strength=1.0)
  assert np.abs(out - fade).max() < 3 / 255


def test_uint8_in_uint8_out_and_chunking_is_invisible():
  clean, _, _, _ = _clip()
  frames = (_inject(clean, 1) * 255).round().astype(np.uint8)
  a = deflicker(frames, chunk=5)
  b = deflicker(frames, chunk=64)
  assert a.dtype == np.uint8 and a.shape == frames.shape
  assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize("kwargs, field", [(dict(strength=1.5), "strength"),
                                           (dict(radius=2.5), "radius"),
                                           (dict(noise=-1), "noise")])
def test_bad_arguments(kwargs, field):
  with pytest.raises(ValueError, match=f"deflicker: {field}"):
    deflicker(np.zeros((2, 4, 4, 3), np.uint8), **kwargs)
