"""Metrics library (vdm.eval.metrics): ground truth scores near perfect, and each score
degrades monotonically under a controlled corruption."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from vdm.data import scenes
from vdm.data import simple
from vdm.eval import adherence
from vdm.eval.metrics import consistency, drift, image, motion, prediction


def _synthetic(index=0, size=32, frames=12, split="train"):
  spec = simple.sample_spec(simple.example_rng(3, split, index), size, size, frames, split)
  return spec, *simple.render_clip(spec, size, size, frames)


def _render_path(spec, path, size, radius=None, shapes=None):
  """Re-renders a synthetic clip along an arbitrary path [T, 2] (radius/shape per frame)."""
  frames = len(path)
  video = np.empty((frames, size, size, 3), np.uint8)
  video[:] = simple.PALETTE[spec.background]
  for t, (cx, cy) in enumerate(path):
    r = spec.radius if radius is None else radius[t]
    s = spec.shape if shapes is None else shapes[t]
    video[t][simple.shape_mask(s, cx, cy, r, size, size)] = simple.PALETTE[spec.color]
  return video


def _scene(camera="static", background="solid", frames=8, size=32, index=0):
  scene = scenes.sample_scene(scenes.example_rng(2, "train", index), size, size, frames, "train",
                              backgrounds=(background,), cameras=(camera,))
  video, truth = scenes.render_scene(scene)
  return video, truth, scenes.optical_flow(truth)


def _flicker(video, amount, rng):
  """Adds a random global brightness offset of +-amount per frame (sign random)."""
  offset = amount * rng.choice([-1.0, 1.0], size=len(video))[:, None, None, None]
  return np.clip(video.astype(np.float64) + offset, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------- identity persistence

def test_identity_persistence_ground_truth_and_colour_drift():
  spec, video, truth = _synthetic()
  mask = adherence.detect_object(video)["mask"]
  gt = consistency.identity_persistence(video, mask)
  assert gt["color"] == 0.0 and gt["missing"] == 0.0
  assert gt["size"] < 0.15 and gt["shape"] < 0.2, gt
  # Wrong colour creeping in: object pixels blend toward another palette colour over time.
  other = next(c for c in range(len(simple.COLORS)) if c not in (spec.color, spec.background))
  ramp = np.linspace(0, 1, len(video))[:, None, None, None]
  obj = np.stack([simple.shape_mask(spec.shape, cx, cy, spec.radius, 32, 32)
                  for cx, cy in truth["center"]])[..., None]
  scores = [gt["color"]]
  for strength in (0.3, 0.6, 1.0):
    target = (1 - strength * ramp) * simple.PALETTE[spec.color] + \
        strength * ramp * simple.PALETTE[other]
    bad = np.where(obj, np.round(target), video).astype(np.uint8)
    scores.append(consistency.identity_persistence(bad, obj[..., 0])["color"])
  assert np.all(np.diff(scores) > 0.02), scores


def test_identity_persistence_size_and_shape():
  spec, video, truth = _synthetic(index=1, size=48)
  spec = simple.ClipSpec(**{**spec.__dict__, "shape": 0, "radius": 8.0})
  path = truth["center"]
  base = consistency.identity_persistence(*_pair(_render_path(spec, path, 48)))
  sizes = [base["size"]]
  for shrink in (0.8, 0.6, 0.4):
    radius = 8.0 * np.linspace(1, shrink, len(path))
    sizes.append(consistency.identity_persistence(
        *_pair(_render_path(spec, path, 48, radius=radius)))["size"])
  assert np.all(np.diff(sizes) > 0.05), sizes
  # Circle turning into a square, then a triangle: the outline changes, the size barely.
  half = len(path) // 2
  square = [0] * half + [1] * (len(path) - half)
  triangle = [0] * half + [2] * (len(path) - half)
  shapes = [base["shape"]] + [consistency.identity_persistence(
      *_pair(_render_path(spec, path, 48, shapes=s)))["shape"] for s in (square, triangle)]
  assert np.all(np.diff(shapes) > 0.03), shapes


def _pair(video):
  return video, adherence.detect_object(video)["mask"]


def test_identity_persistence_missing_object():
  spec, video, _ = _synthetic()
  video[5:] = simple.PALETTE[spec.background]
  out = consistency.identity_persistence(video, adherence.detect_object(video)["mask"])
  assert out["missing"] == pytest.approx(7 / 12)
  assert np.isnan(out["color_change"][5:]).all() and not out["found"][5:].any()


# ------------------------------------------------------------------------- flicker and warping

def test_flicker_zero_on_truth_and_grows_with_injected_flicker():
  video, truth, flow = _scene(camera="static", background="gradient")
  static = consistency.static_mask(flow, truth["segmentation"])
  assert static.mean() > 0.5
  rng = np.random.default_rng(0)
  scores = [consistency.flicker(video, static)["mean"]]
  assert scores[0] == 0.0
  for amount in (2, 8, 20):
    scores.append(consistency.flicker(_flicker(video, amount, rng), static)["mean"])
  assert np.all(np.diff(scores) > 0), scores
  # A panning camera moves every pixel: nothing is static, flicker is undefined (nan).
  video, truth, flow = _scene(camera="pan-left", frames=4)
  static = consistency.static_mask(flow, truth["segmentation"])
  assert not static.any()
  assert np.isnan(consistency.flicker(video, static)["mean"])


@pytest.mark.parametrize("camera", ["static", "pan-right", "zoom-in"])
def test_warping_error_zero_on_truth(camera):
  video, truth, flow = _scene(camera=camera)
  out = consistency.warping_error(video, flow, truth["segmentation"])
  assert out["mean"] == 0.0 and np.all(out["visible"] > 0.5), out


def test_warping_error_grows_under_corruption():
  video, truth, flow = _scene(camera="pan-right", background="gradient", frames=8, index=3)
  seg = truth["segmentation"]
  gt = consistency.warping_error(video, flow, seg)["mean"]
  assert gt < 0.01  # the gradient is re-sampled at whole pixels: near, not exactly, zero
  rng = np.random.default_rng(1)
  scores = [gt] + [consistency.warping_error(_flicker(video, a, rng), flow, seg)["mean"]
                   for a in (4, 12, 30)]
  assert np.all(np.diff(scores) > 0), scores
  # Reversed motion: the clip played backwards disagrees with the forward flow.
  assert consistency.warping_error(video[::-1], flow, seg)["mean"] > 2 * gt + 0.01


def test_consistency_rejects_bad_shapes():
  with pytest.raises(ValueError, match="static must be"):
    consistency.flicker(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 8, 8), bool))
  with pytest.raises(ValueError, match="flow must be"):
    consistency.warping_error(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 8, 8, 2)),
                              np.zeros((4, 8, 8), int))


# ------------------------------------------------------------------------- motion

def test_stalls_zero_on_truth_and_grow_with_frozen_frames():
  spec, video, truth = _synthetic(index=2, size=48, frames=16)
  measured = adherence.detect_object(video)["centers"]
  gt = motion.stalls(measured, truth["center"])
  assert gt["fraction"] == 0.0 and gt["judged"].all(), gt
  fractions, longest = [], []
  for frozen in (0, 4, 8, 12):
    path = truth["center"].copy()
    if frozen:
      path[-frozen:] = path[-frozen - 1]  # the object stops for the last `frozen` frames
    out = motion.stalls(adherence.detect_object(_render_path(spec, path, 48))["centers"],
                        truth["center"])
    fractions.append(out["fraction"])
    longest.append(out["longest"])
  assert fractions[0] == 0.0 and np.all(np.diff(fractions) > 0), fractions
  assert np.all(np.diff(longest) > 0), longest
  # Nothing to judge for a still object; a vanished object counts as stalled.
  still = np.zeros((6, 2))
  assert np.isnan(motion.stalls(still, still)["fraction"])
  line = np.stack([np.arange(6.0), np.zeros(6)], -1)
  gone = line.copy()
  gone[3:] = np.nan
  assert motion.stalls(gone, line, window=1)["fraction"] == pytest.approx(3 / 5)


def test_trajectory_error_truth_reversal_and_drift():
  spec, video, truth = _synthetic(index=4, size=48, frames=16)
  given = 4
  gt = motion.trajectory_error(adherence.detect_object(video)["centers"], truth["center"],
                               start=given)
  assert gt["mean"] < 0.5 and gt["found"] == 1.0 and gt["per_frame"].shape == (12,)
  errors = [gt["mean"]]
  for rate in (0.2, 0.5, 1.0):
    path = truth["center"] + rate * np.maximum(np.arange(16) - given + 1, 0)[:, None] * [1, 1]
    path = np.clip(path, spec.radius, 47 - spec.radius)
    errors.append(motion.trajectory_error(
        adherence.detect_object(_render_path(spec, path, 48))["centers"], truth["center"],
        start=given)["mean"])
  assert np.all(np.diff(errors) > 0.2), errors
  # Reversed motion after the given frames goes back the way it came.
  reverse = truth["center"].copy()
  reverse[given:] = truth["center"][given - 1] - (truth["center"][given:] -
                                                  truth["center"][given - 1])
  assert motion.trajectory_error(reverse, truth["center"], start=given)["mean"] > 3.0


def _bounce_truth(frames=40):
  obj = scenes.ObjectSpec(color=0, shape=0, motion=scenes.MOTIONS.index("bounce"), speed=1,
                          radius=3.0, start=(9.3, 20.1), velocity=(2.3, -1.7),
                          bounds=(4.0, 27.0, 4.0, 27.0))
  scene = scenes.Scene(height=32, width=32, frames=frames, objects=(obj,), background=0,
                       bg_colors=(7, 7))
  video, truth = scenes.render_scene(scene)
  return video, truth["center"][:, 0], obj.bounds


def test_bounce_plausibility():
  video, center, bounds = _bounce_truth()
  exact = motion.bounce_plausibility(center, bounds)
  assert exact["mean"] < 0.05 and exact["outside"] == 0.0, exact["mean"]
  detected = motion.bounce_plausibility(adherence.detect_object(video)["centers"], bounds)
  assert detected["mean"] < 0.6, detected["mean"]
  # Implausible physics of growing severity: reversing in mid-air, stopping dead, passing
  # through a wall.
  m = 20
  midair = center.copy()
  midair[m:] = center[m - np.arange(1, len(center) - m + 1)]
  stop = center.copy()
  stop[m:] = center[m]
  through = center.copy()
  through[m:] = center[m] + (np.arange(1, len(center) - m + 1)[:, None]) * [2.3, -1.7]
  scores = {name: motion.bounce_plausibility(c, bounds) for name, c in
            [("midair", midair), ("stop", stop), ("through", through)]}
  for name, s in scores.items():
    assert s["mean"] > 1.0, (name, s["mean"])
  assert scores["through"]["outside"] > 1.0
  # A stall of growing length is less and less explainable by any valid bounce (up to about
  # half the clip: beyond that a slower bounce is the nearest valid path; `stalls` counts those).
  stalls = []
  for start in (36, 32, 28):
    c = center.copy()
    c[start:] = center[start]
    stalls.append(motion.bounce_plausibility(c, bounds)["mean"])
  assert exact["mean"] < stalls[0] and np.all(np.diff(stalls) > 0), stalls


# ------------------------------------------------------------------------- drift curves

def test_drift_curve_statistics_and_plot(tmp_path):
  values = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, np.nan]])
  c = drift.curve(values)
  np.testing.assert_allclose(c["mean"], [1.0, 2.0, 2.0])
  np.testing.assert_allclose(c["std"], [1.0, 1.0, 0.0])
  np.testing.assert_array_equal(c["count"], [2, 2, 1])
  # Clips of different lengths: a per-frame metric that grows with t (drift).
  clips = [np.arange(4.0), 2 * np.arange(6.0)]
  dc = drift.drift_curve(lambda x, scale: scale * x, clips, scale=0.5)
  np.testing.assert_allclose(dc["mean"], [0, 0.75, 1.5, 2.25, 4.0, 5.0])
  np.testing.assert_array_equal(dc["count"], [2, 2, 2, 2, 1, 1])
  path = drift.plot_drift_curves({"parallel": c, "autoregressive": dc},
                                 str(tmp_path / "sub" / "drift.png"), ylabel="error",
                                 train_length=3)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError):
    drift.curve(np.zeros(3))


# ------------------------------------------------------------------------- PSNR / SSIM

def test_ssim_matches_skimage():
  rng = np.random.default_rng(0)
  for shape, data_range in [((24, 31, 3), 1.0), ((16, 16, 1), 255.0)]:
    a = rng.random(shape) * data_range
    b = np.clip(a + 0.15 * data_range * rng.normal(size=shape), 0, data_range)
    want = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=data_range,
                                 channel_axis=-1)
    assert float(image.ssim(a, b, data_range=data_range)) == pytest.approx(want, abs=1e-4)
  # Batched: one value per image.
  a = rng.random((2, 3, 16, 16, 3))
  assert image.ssim(a, a).shape == (2, 3)
  np.testing.assert_allclose(image.ssim(a, a), 1.0, atol=1e-5)


def test_psnr_closed_form_and_monotone_degradation():
  rng = np.random.default_rng(1)
  a = rng.random((2, 16, 16, 3))
  b = a + 0.1  # mse exactly 0.01 -> 20 dB
  np.testing.assert_allclose(image.psnr(a, b), 20.0, atol=1e-3)
  assert np.isinf(image.psnr(a, a)).all()
  psnrs, ssims = [], []
  for std in (0.02, 0.05, 0.1, 0.2):
    noisy = np.clip(a + std * rng.normal(size=a.shape), 0, 1)
    psnrs.append(float(image.psnr(a, noisy).mean()))
    ssims.append(float(image.ssim(a, noisy).mean()))
  assert np.all(np.diff(psnrs) < 0) and np.all(np.diff(ssims) < 0), (psnrs, ssims)


# ------------------------------------------------------------------------- Moving-MNIST

def test_prediction_scores_closed_form_and_degradation():
  from vdm.data import moving_mnist
  true = np.stack([moving_mnist.make_example(0, "test", i)["video"][10:] for i in range(2)])
  perfect = prediction.prediction_scores(true, true)
  assert perfect["mse"] == 0.0 and perfect["ssim"] == pytest.approx(1.0, abs=1e-5)
  # A uniform 0.1 error on 64x64 grey pixels: 4096 * 0.01 = 40.96 per frame (RGB-repeated
  # frames must count once, not three times).
  grey = true[..., 0].astype(np.float32) / 255.0
  shifted = np.clip(grey + 0.1, 0, 1)
  want = ((shifted - grey) ** 2).sum(axis=(2, 3)).mean()
  out = prediction.prediction_scores(shifted, grey)
  assert out["mse"] == pytest.approx(want, rel=1e-5) and 30 < out["mse"] <= 40.96
  assert prediction.prediction_scores(np.repeat(shifted[..., None], 3, -1), true)["mse"] == \
      pytest.approx(want, rel=1e-4)
  # The usual failure: a prediction that blurs and fades over time is worse at every step.
  rng = np.random.default_rng(0)
  mses, ssims = [], []
  for std in (0.05, 0.15, 0.3):
    noisy = np.clip(grey + std * rng.normal(size=grey.shape), 0, 1)
    s = prediction.prediction_scores(noisy, grey)
    mses.append(s["mse"])
    ssims.append(s["ssim"])
  assert np.all(np.diff(mses) > 0) and np.all(np.diff(ssims) < 0), (mses, ssims)
  assert out["mse_per_frame"].shape == (10,) and out["ssim_per_clip"].shape == (2,)


def test_best_of_k_and_table():
  rng = np.random.default_rng(0)
  true = rng.random((3, 4, 16, 16))
  good = true + 0.01
  bad = true + 0.2
  samples = np.stack([bad, good, bad])
  out = prediction.best_of_k_scores(samples, true)
  np.testing.assert_array_equal(out["choice"], [1, 1, 1])
  assert out["mse"] == pytest.approx(256 * 1e-4, rel=1e-3)
  assert out["per_sample"]["mse"] > out["mse"]
  table = prediction.markdown_table({"vdm (best of 3)": out})
  assert "| TAU | 19.8 | 0.957 | published |" in table
  assert "| ConvLSTM | 103.3 | 0.707 | published |" in table
  assert "vdm (best of 3) | 0.0 |" in table and len(table.strip().split("\n")) == 7
