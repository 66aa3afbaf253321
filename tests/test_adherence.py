"""The pixel-based prompt-adherence metric, calibrated on ground-truth synthetic clips."""
import numpy as np
import pytest

from vdm.data import simple
from vdm.eval import adherence


def _clips(num_per_size=30, seed=11):
  """Ground-truth clips of mixed sizes and both splits: (video, spec, truth)."""
  out = []
  for height, width, frames in [(32, 32, 9), (64, 64, 9)]:
    for i in range(num_per_size):
      split = ("train", "test")[i % 2]
      spec = simple.sample_spec(simple.example_rng(seed, split, i), height, width,
                                frames, split)
      video, truth = simple.render_clip(spec, height, width, frames)
      out.append((video, spec, truth))
  return out


def _degrade(video, rng, noise_std=15.0):
  """3x3 box blur then Gaussian noise: roughly what a small generator's output looks like."""
  x = np.pad(video.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = video.shape[1:3]
  blurred = sum(x[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
  return np.clip(np.round(blurred + rng.normal(0.0, noise_std, video.shape)), 0,
                 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clips():
  return _clips()


def test_perfect_on_ground_truth(clips):
  scores = []
  for video, spec, truth in clips:
    detected = adherence.detect_object(video)
    assert detected["background"] == spec.background
    assert detected["mask"].shape == video.shape[:3]
    np.testing.assert_array_less(np.abs(detected["centers"] - truth["center"]), 1.0)
    scores.append(adherence.score(video, spec.color, spec.direction))
  summary = adherence.summarize(scores)
  assert summary == dict(color_accuracy=1.0, direction_accuracy=1.0, n=60)


def test_robust_to_blur_and_noise(clips):
  rng = np.random.default_rng(0)
  scores = [adherence.score(_degrade(video, rng), spec.color, spec.direction)
            for video, spec, _ in clips]
  summary = adherence.summarize(scores)
  assert summary["color_accuracy"] >= 0.95, summary
  assert summary["direction_accuracy"] >= 0.95, summary


def test_heavy_noise(clips):
  rng = np.random.default_rng(1)
  scores = [adherence.score(_degrade(video, rng, noise_std=40.0), spec.color, spec.direction)
            for video, spec, _ in clips[:30]]
  summary = adherence.summarize(scores)
  assert summary["color_accuracy"] >= 0.95, summary
  assert summary["direction_accuracy"] >= 0.95, summary


def test_tiny_blurred_objects():
  # At 16x16 an object is a few pixels wide and blur mixes most of them with the background;
  # the colour must come from the object's core, not from the mixed rim.
  rng = np.random.default_rng(2)
  scores = []
  for i in range(40):
    split = ("train", "test")[i % 2]
    spec = simple.sample_spec(simple.example_rng(5, split, i), 16, 16, 5, split)
    video, _ = simple.render_clip(spec, 16, 16, 5)
    scores.append(adherence.score(_degrade(video, rng), spec.color, spec.direction))
  summary = adherence.summarize(scores)
  assert summary["color_accuracy"] >= 0.9, summary
  assert summary["direction_accuracy"] >= 0.95, summary


def test_stray_blobs_do_not_move_the_object(clips):
  rng = np.random.default_rng(3)
  for video, spec, truth in clips[::5]:
    frames, height, width, _ = video.shape
    speckled = video.copy()
    stray = simple.PALETTE[(spec.background + 1) % len(simple.COLORS)]
    for t in range(frames):
      # 2x2 blobs: single pixels are already removed by the detector's smoothing.
      for y, x in zip(rng.integers(height - 1, size=3), rng.integers(width - 1, size=3)):
        speckled[t, y:y + 2, x:x + 2] = stray
    detected = adherence.detect_object(speckled)
    assert detected["color"] == spec.color
    np.testing.assert_array_less(np.abs(detected["centers"] - truth["center"]), 1.0)


def test_wrong_prompt_is_scored_wrong(clips):
  for video, spec, _ in clips[::6]:
    other_color = (spec.color + 1) % len(simple.COLORS)
    result = adherence.score(video, other_color, spec.direction)
    assert not result["color_ok"] and result["detected_color"] == spec.color
    # Played backwards the object moves the opposite way.
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[
        simple.DIRECTIONS[spec.direction]]
    result = adherence.score(video[::-1], spec.color, spec.direction)
    assert result["color_ok"] and not result["direction_ok"]
    assert result["detected_direction"] == simple.DIRECTIONS.index(opposite)
    # A frozen clip has no direction at all.
    frozen = np.repeat(video[:1], len(video), axis=0)
    assert adherence.score(frozen, spec.color, spec.direction)["detected_direction"] == -1


def test_recoloured_object_is_detected_as_new_colour(clips):
  video, spec, truth = clips[0]
  new_color = next(c for c in range(len(simple.COLORS))
                   if c not in (spec.color, spec.background))
  recoloured = video.copy()
  recoloured[np.all(video == simple.PALETTE[spec.color], axis=-1)] = (
      simple.PALETTE[new_color])
  assert adherence.detect_object(recoloured)["color"] == new_color
  assert not adherence.score(recoloured, spec.color, spec.direction)["color_ok"]


def test_empty_video_finds_nothing():
  video = np.zeros((6, 32, 32, 3), np.uint8) + simple.PALETTE[2]
  detected = adherence.detect_object(video)
  assert detected["color"] == -1 and detected["background"] == 2
  assert np.isnan(detected["centers"]).all() and not detected["mask"].any()
  assert adherence.score(video, 0, 0) == dict(color_ok=False, direction_ok=False,
                                              detected_color=-1, detected_direction=-1)


def test_motion_direction_on_tracks():
  t = np.arange(8, dtype=np.float32)
  still = np.full(8, 10.0, np.float32)
  for name, xy in [("right", (10 + t, still)), ("left", (10 - t, still)),
                   ("up", (still, 10 - t)), ("down", (still, 10 + t))]:
    centers = np.stack(xy, axis=-1)
    assert adherence.motion_direction(centers) == simple.DIRECTIONS.index(name)
  centers = np.stack([10 + t, still], axis=-1)
  centers[[1, 4]] = np.nan  # a few missed frames do not matter
  assert adherence.motion_direction(centers) == simple.DIRECTIONS.index("right")
  centers[2:] = np.nan  # too few frames found
  assert adherence.motion_direction(centers) == -1
  tiny = np.stack([10 + 0.05 * t, still], axis=-1)
  assert adherence.motion_direction(tiny) == -1


def test_summarize():
  scores = [dict(color_ok=True, direction_ok=False), dict(color_ok=True, direction_ok=True),
            dict(color_ok=False, direction_ok=False), dict(color_ok=True, direction_ok=False)]
  assert adherence.summarize(scores) == dict(color_accuracy=0.75, direction_accuracy=0.25, n=4)
  assert adherence.summarize([])["n"] == 0


def test_wrapped_clips_are_tracked_across_the_edge():
  """On wrapped clips (objects leave one edge and re-enter at the other) the torus-aware
  detector finds the whole object, its centre modulo the frame, and the caption's direction on
  every ground-truth clip; the plain detector, which cuts the object at the edge, misses some."""
  plain_ok = []
  for i in range(40):
    e = simple.make_example(2, "test", i, 32, 32, 9, wrap=True)
    result = adherence.score(e["video"], e["color"], e["direction"], wrap=True)
    assert result["color_ok"] and result["direction_ok"], i
    found = adherence.detect_object(e["video"], wrap=True)["centers"]
    true = e["center"] % 32
    gap = np.abs(found - true)
    np.testing.assert_array_less(np.minimum(gap, 32 - gap), 1.0)  # distance on the torus
    plain = adherence.score(e["video"], e["color"], e["direction"])
    plain_ok.append(plain["direction_ok"])
  assert np.mean(plain_ok) < 0.9
  # unwrapping: a track that crosses the right edge keeps moving right
  track = np.array([[28.0, 5.0], [30.5, 5.0], [1.0, 5.0], [3.5, 5.0]])
  np.testing.assert_allclose(adherence.unwrap_track(track, (32, 32))[:, 0], [28, 30.5, 33, 35.5])
  assert adherence.motion_direction(track, period=(32, 32)) == simple.DIRECTIONS.index("right")
  assert adherence.motion_direction(track) == simple.DIRECTIONS.index("left")
