"""The synthetic soundtrack (vdm.data.soundtrack): clicks at the exact sample of each bounce,
pitch from colour, loudness from speed, silence when still, captions that say it; stored beside
the frames by the scenes builder and read back by the loader."""
import numpy as np
import pytest

from vdm.data import kinds
from vdm.data import scene_examples
from vdm.data import scenes
from vdm.data import soundtrack
from vdm.data.loader import make_loader
from vdm.eval.metrics import audio as audio_metrics

SR, FPS = 16_000, 8


def _examples(num, split="train", frames=17, size=32, sample_rate=SR, **kw):
  settings = dict(scene_examples.SOUND_SCENES, **kw)
  return [scene_examples.make_example(3, split, i, size, size, frames, sample_rate=sample_rate,
                                      fps=FPS, **settings) for i in range(num)]


def _events(example):
  keep = example["event_frame"] >= 0
  return example["event_frame"][keep], example["event_object"][keep]


def test_every_click_starts_within_one_sample_of_its_bounce():
  checked = 0
  for split in ("train", "test", "long"):
    for example in _examples(12, split):
      audio = soundtrack.from_pcm16(example["audio"])
      times, _ = _events(example)
      gap = 0.005  # s; a corner hit (both axes at once) is one sound, heard at its first wall
      onsets = audio_metrics.click_onsets(audio, SR, min_gap=gap)
      samples = times * SR / FPS
      first = samples[np.diff(samples, prepend=-np.inf) > gap * SR]
      assert len(onsets) == len(first), (example["caption"], onsets, samples)
      np.testing.assert_array_less(np.abs(onsets - first), 1.0)
      checked += len(first)
  assert checked > 50


def test_bounce_times_are_where_the_rendered_centre_reflects():
  """Each event time, recomputed from the rendered centres of the frames around it: the path
  into the wall and the path out of it (both at the object's speed) meet at that time."""
  checked = 0
  for example in _examples(16):
    times, objects = _events(example)
    center = example["center"].astype(np.float64)  # static camera: image = world
    for t, k in zip(times, objects):
      a = int(np.floor(t))
      if a < 1 or a + 2 >= len(center):
        continue
      meets = []
      for axis in (0, 1):
        before = center[a, k, axis] - center[a - 1, k, axis]
        after = center[a + 2, k, axis] - center[a + 1, k, axis]
        if np.sign(before) == np.sign(after) or abs(before) < 1e-6:
          continue  # this axis did not reflect in (a, a + 1)
        # The wall w = c[a] + before (t - a), and c[a+1] = w + after (a + 1 - t).
        meets.append((center[a + 1, k, axis] - center[a, k, axis] + before * a
                      - after * (a + 1)) / (before - after))
      assert meets and min(abs(m - t) for m in meets) < 1e-3, (meets, t)
      checked += 1
  assert checked > 10


def test_pitch_is_the_colour_loudness_the_speed_silence_when_still():
  seen_still = seen_moving = 0
  for example in _examples(24, max_objects=2):
    audio = soundtrack.from_pcm16(example["audio"])
    amplitudes = audio_metrics.tone_amplitudes(audio, SR)
    present = example["present"]
    for k in np.nonzero(present)[0]:
      color, loud = int(example["color"][k]), float(example["loudness"][k])
      assert example["tone_hz"][k] == pytest.approx(soundtrack.TONE_HZ[color])
      if scenes.MOTIONS[example["motion"][k]] == "still":
        assert loud == 0.0
        seen_still += 1
      else:
        assert loud > audio_metrics.TONE_THRESHOLD
        seen_moving += 1
    # Each sounding colour's measured amplitude is its object's loudness; the rest are quiet.
    expected = np.zeros(len(scenes.COLORS))
    for k in np.nonzero(present)[0]:
      expected[example["color"][k]] += example["loudness"][k]
    np.testing.assert_allclose(amplitudes, expected, atol=0.006)
    if not np.any(example["loudness"]):
      assert not np.any(example["audio"]), "a clip where nothing moves is silent"
  assert seen_still and seen_moving


def test_loudness_grows_with_speed():
  scene = scenes.sample_scene(scenes.example_rng(0, "train", 0), 32, 32, 17, "train",
                              motions=("left",), max_objects=1)
  obj = scene.objects[0]
  quiet, loud = (soundtrack.loudness(scenes.Scene(**{**scene.__dict__, "objects": (
      type(obj)(**{**obj.__dict__, "velocity": (-v, 0.0)}),)}))[0] for v in (0.2, 1.0))
  assert 0 < quiet < loud <= soundtrack.TONE_AMPLITUDE


def test_captions_and_audio_agree():
  for example in _examples(24, max_objects=2):
    audio = soundtrack.from_pcm16(example["audio"])
    caption = example["caption"]
    sounding = audio_metrics.sounding_colors(audio, SR)
    words = {soundtrack.PITCH_WORDS[c] for c in sounding}
    if not sounding:
      assert caption.endswith(", in silence") and not np.any(example["audio"])
      continue
    heard = caption.split(", with ")[-1]
    assert all(f"{w}" in heard for w in words) and heard.count("a ") == len(words), (
        caption, words)
    has_clicks = len(audio_metrics.click_onsets(audio, SR)) > 0
    assert heard.endswith("and clicks") == has_clicks
    assert example["caption_long"].endswith(f"It plays {caption.split(', ')[-1]}.")


def test_same_seed_same_soundtrack_and_no_audio_by_default():
  a, b = _examples(2), _examples(2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["audio"], y["audio"])
  plain = scene_examples.make_example(3, "train", 0, 32, 32, 9)
  assert "audio" not in plain and "with" not in plain["caption"].split(", ")[-1][:5]


def test_bad_sample_rate_is_refused():
  with pytest.raises(ValueError, match="multiple of fps"):
    soundtrack.samples_per_frame(16_001, 8)


def test_builder_stores_audio_beside_frames(tmp_path):
  data = dict(kind="sound_scenes", height=16, width=16, frames=5, num_train=4, num_test=2,
              num_long=1, sample_rate=8000, fps=8, seed=0)
  builder = kinds.build(data, str(tmp_path))
  batch = next(iter(make_loader(builder, "train", batch_size=2, seed=0, shuffle=False)))
  assert batch["audio"].dtype == np.int16 and batch["audio"].shape == (2, 5 * 1000)
  for i in range(2):
    want = scene_examples.make_example(0, "train", i, 16, 16, 5, sample_rate=8000, fps=8,
                                       **scene_examples.SOUND_SCENES)
    np.testing.assert_array_equal(batch["audio"][i], want["audio"])
    np.testing.assert_array_equal(batch["video"][i], want["video"])
    assert batch["caption"][i] == want["caption"]
  long = next(iter(make_loader(builder, "long", batch_size=1, seed=0)))
  assert long["audio"].shape == (1, 20 * 1000)
  assert long["event_frame"].shape == (1, 4 * soundtrack.EVENT_SLOTS)
