"""Rollout scores: near perfect on ground-truth clips, worse under each controlled corruption."""
import numpy as np
import pytest

from vdm.data import simple
from vdm.eval.metrics.rollout import frame_scores, stall_fraction


@pytest.fixture(scope="module")
def clip():
  _, example = next(simple.generate_examples(0, "test", 1, 32, 32, 9))
  return example


def test_ground_truth_clips_score_near_perfect(clip):
  s = frame_scores(clip["video"], int(clip["color"]), int(clip["background"]))
  assert s["colour_error"].max() < 1e-6
  assert s["object_ok"].all()
  assert np.nanmax(s["flicker"]) < 1e-6 and np.isnan(s["flicker"][0])


def test_wrong_colour_is_caught(clip):
  wrong = (int(clip["color"]) + 1) % len(simple.PALETTE)
  if wrong == int(clip["background"]):
    wrong = (wrong + 1) % len(simple.PALETTE)
  s = frame_scores(clip["video"], wrong, int(clip["background"]))
  assert not s["object_ok"].any() and s["colour_error"].min() > 0.0


def test_noise_and_flicker_raise_the_scores_monotonically(clip):
  rng = np.random.default_rng(0)
  video = clip["video"].astype(np.float64)
  errors, flickers = [], []
  for strength in (0.0, 10.0, 20.0, 40.0):
    noisy = video + strength * rng.standard_normal(video.shape[:1] + (1, 1, 3))  # per-frame shift
    s = frame_scores(np.clip(noisy, 0, 255).astype(np.uint8), int(clip["color"]),
                     int(clip["background"]))
    errors.append(s["colour_error"].mean())
    flickers.append(np.nanmean(s["flicker"]))
  assert np.all(np.diff(errors) > 0) and np.all(np.diff(flickers) > 0)


def test_a_frozen_clip_stalls_and_the_true_clip_does_not(clip):
  centers = clip["center"]
  speed = float(np.linalg.norm(centers[1] - centers[0]))
  direction = int(clip["direction"])
  assert stall_fraction(centers, direction, speed=speed) == 0.0
  frozen = np.repeat(centers[:1], len(centers), axis=0)
  assert stall_fraction(frozen, direction, speed=speed) == 1.0
  half = centers.copy()
  half[4:] = half[4]  # stops halfway
  assert 0.3 < stall_fraction(half, direction, speed=speed) < 0.8
