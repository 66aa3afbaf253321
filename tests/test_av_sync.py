"""The av-sync measures (vdm.eval.av_sync, vdm.eval.metrics.audio) on ground truth: true clips
pass, shifted soundtracks are caught with their offset, and random pairings fail."""
import numpy as np
import pytest

from vdm.data import scene_examples, scenes, soundtrack
from vdm.eval import av_sync
from vdm.eval.metrics import audio as audio_metrics

SR, FPS = 16_000, 8


@pytest.fixture(scope="module")
def clips():
  """40 held-out clips of the sound scenes, 32x32, 17 frames, one object each."""
  return [scene_examples.make_example(0, "test", i, 32, 32, 17, sample_rate=SR, fps=FPS,
                                      max_objects=1, **scene_examples.SOUND_SCENES)
          for i in range(40)]


def _score(clips, shift=0.0, audio_of=None):
  rows = []
  for i, clip in enumerate(clips):
    audio = soundtrack.from_pcm16((audio_of or clips)[i]["audio"])
    rows.append(av_sync.score_clip(clip["video"], av_sync.shift_audio(audio, shift, SR), SR,
                                   FPS))
  return av_sync.summarize(rows, FPS)


def test_bounce_times_of_a_reflected_path():
  """A centre bouncing between walls at known times: found to a hundredth of a frame."""
  frames, lo, hi, v = 17, 5.0, 20.0, 2.3
  u = 7.0 + v * np.arange(frames)
  x = lo + (hi - lo) - np.abs(np.mod(u - lo, 2 * (hi - lo)) - (hi - lo))
  center = np.stack([x, np.full(frames, 10.0)], -1)
  want = [(m * (hi - lo) - (7.0 - lo)) / v for m in (1, 2)]  # u - lo = m span
  np.testing.assert_allclose(av_sync.bounce_times(center), want, atol=0.01)
  jitter = center + np.random.default_rng(0).normal(0, 0.2, center.shape) * [0, 1]
  assert len(av_sync.bounce_times(jitter)) == 2  # jitter on the still axis is no bounce


def test_ground_truth_clips_are_in_sync(clips):
  summary = _score(clips)
  assert summary["bounces"] >= 20
  assert summary["median_onset_error_ms"] < 15  # the frames' centroids time a bounce
  assert summary["missed"] < 0.15  # (a digit's jittery centroid can fake a bounce)
  assert summary["pitch_accuracy"] == 1.0 and summary["pitch_clips"] >= 20
  assert summary["silence_when_still"] > 0.95 and summary["still_frames"] > 50
  assert summary["median_abs_offset_ms"] < 15


@pytest.mark.parametrize("shift", [0.2, -0.15, 0.05])
def test_a_shifted_soundtrack_is_caught_with_its_offset(clips, shift):
  rows = [av_sync.score_clip(c["video"], av_sync.shift_audio(soundtrack.from_pcm16(c["audio"]),
                                                             shift, SR), SR, FPS)
          for c in clips]
  offsets = np.asarray([r["offset_ms"] for r in rows if np.isfinite(r["offset_ms"])])
  assert len(offsets) >= 8
  np.testing.assert_allclose(np.median(offsets), shift * 1000, atol=15)
  summary = av_sync.summarize(rows, FPS)
  assert summary["median_onset_error_ms"] == pytest.approx(abs(shift) * 1000, abs=20)


def test_random_soundtracks_are_out_of_sync(clips):
  shuffled = [clips[(i + 7) % len(clips)] for i in range(len(clips))]
  summary = _score(clips, audio_of=shuffled)
  truth = _score(clips)
  assert summary["median_onset_error_ms"] > 125  # more than a frame at 8 fps
  assert summary["pitch_accuracy"] < 0.5
  assert summary["silence_when_still"] < truth["silence_when_still"]


def test_frame_rms_and_onsets_of_known_signals():
  audio = np.zeros(4 * SR // FPS, np.float32)
  audio[SR // FPS:2 * SR // FPS] = 0.1  # frame 1 loud (a constant 0.1)
  np.testing.assert_allclose(audio_metrics.frame_rms(audio, SR, FPS), [0, 0.1, 0, 0], atol=1e-6)
  burst = soundtrack.click(SR)
  audio[3000:3000 + len(burst)] += burst
  np.testing.assert_array_equal(audio_metrics.click_onsets(audio, SR), [3000])
  lag = audio_metrics.offset_by_xcorr(audio_metrics.event_train([0.5], 2000, 1000.0),
                                      audio_metrics.event_train([0.62], 2000, 1000.0), 1000.0,
                                      max_lag=0.5)
  assert lag == pytest.approx(0.12)
  assert np.isnan(audio_metrics.offset_by_xcorr(np.zeros(10), np.ones(10), 1000.0, max_lag=0.005))


def test_tracking_finds_the_object_colour_and_path(clips):
  for clip in clips[:10]:
    tracks = av_sync.track_objects(clip["video"])
    k = 0
    assert list(tracks) == [int(clip["color"][k])], (clip["caption"], list(tracks))
    true = clip["center"][:, k]
    found = tracks[int(clip["color"][k])]
    if scenes.SHAPES[clip["shape"][k]] in ("circle", "square", "ring"):
      np.testing.assert_allclose(found, true, atol=1.0)
