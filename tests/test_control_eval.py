"""Control metrics on ground-truth clips (the scenes data renders exactly what was requested):
~0 error on them, and the size of a known perturbation when one is added."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from vdm.control import camera
from vdm.data import scene_examples, scenes
from vdm.eval.metrics import control as m

SIZE = dict(height=32, width=32, frames=9)


def test_clips(kind=None, n=3, shapes_only=True):
  """(example, scene) of test clips, optionally of one background kind, no digits."""
  out, i = [], 0
  while len(out) < n:
    rng = scenes.example_rng(0, "test", i)
    scene = scenes.sample_scene(rng, 32, 32, 9, "test", max_objects=1)
    i += 1
    if shapes_only and scenes.SHAPES[scene.objects[0].shape] == "digit":
      continue
    if kind is not None and scenes.BACKGROUNDS[scene.background] != kind:
      continue
    out.append((scene_examples.make_example(0, "test", i - 1, 32, 32, 9, max_objects=1), scene))
  return out


test_clips.__test__ = False  # a helper, not a test


def test_trajectory_error_is_zero_on_ground_truth_and_the_offset_when_shifted():
  for example, _ in test_clips(n=4):
    centers = m.object_centers(example["video"], int(example["color"][0]))
    truth = example["center"][:, 0]
    exact = m.trajectory_error(centers, truth)
    assert exact["found"] == 1.0 and exact["mean"] < 0.3, exact
    shifted = m.trajectory_error(centers, truth + [3.0, 0.0])
    assert abs(shifted["mean"] - 3.0) < 0.3
  missing = m.trajectory_error(np.full((9, 2), np.nan), truth)
  assert missing["found"] == 0.0 and np.isnan(missing["mean"])


def test_camera_error_is_zero_on_ground_truth_and_the_extra_motion_when_perturbed():
  for example, scene in test_clips("texture", n=2):
    requested = camera.step_transforms(example["camera"])
    objects = example["segmentation"] > 0
    exact = m.camera_error(m.estimate_camera(example["video"], ignore=objects), requested, 32, 32)
    assert exact["mean"] < 0.3, exact
  # The same scene panned 1 px per frame further right than requested: 1 px per step of error.
  still = dataclasses.replace(scene, camera=scenes.CAMERAS.index("pan-right"), camera_amount=4.0)
  faster = dataclasses.replace(still, camera_amount=12.0)
  video, truth = scenes.render_scene(faster)
  requested = camera.step_transforms(scenes.camera_transforms(still))
  err = m.camera_error(m.estimate_camera(video, ignore=truth["segmentation"] > 0), requested,
                       32, 32)
  assert abs(err["mean"] - 1.0) < 0.3, err


def _recolored(video, segmentation, frame, color):
  out = video.copy()
  where = segmentation[frame:] > 0
  out[frame:][where] = scenes.PALETTE[color]
  return out


def test_adherence_lag_identity_and_spike_on_a_recoloured_clip():
  example, scene = test_clips("solid", n=1)[0]
  old = int(example["color"][0])
  new = next(c for c in range(len(scenes.COLORS)) if c not in (old, *scene.bg_colors))
  colors = m.frame_colors(example["video"])
  assert np.all(colors == old)
  for delay in (0, 3):
    clip = _recolored(example["video"], example["segmentation"], 4 + delay, new)
    colors = m.frame_colors(clip)
    assert np.all(colors >= 0)  # the object is there in every frame: identity kept
    assert m.adherence_lag(colors == new, 4) == delay
    assert m.switch_spike(clip, 4 + delay) > 1.5
  assert m.adherence_lag(m.frame_colors(example["video"]) == new, 4) is None


def test_the_ground_truth_of_a_timeline_follows_it_even_where_the_object_leaves_the_frame():
  """The timeline part's cases on the spine's plain clips at twice their length: the object of
  most of them leaves the frame after the switch, which must not count as not following."""
  from vdm.data import simple
  from vdm.eval.control import timeline_cases, timeline_palette
  data = SimpleNamespace(kind="simple", seed=0, height=32, width=32, frames=9)
  cases = timeline_cases(data, 8)
  left = 0
  for i, case in enumerate(cases):
    example = simple.long_example(0, i, 32, 32, 9, 2, wrap=False)
    assert case["first"] == example["caption"]
    assert case["second"] == simple.switched_caption(case["first"], case["old"], case["new"])
    palette = timeline_palette(data)
    clip = simple.switch_color(example["video"], case["old"], case["new"], 8)
    colors = m.frame_colors(clip, palette)
    assert np.all(colors[:8] == case["old"])
    left += colors[-1] < 0
    assert m.adherence_lag(colors == case["new"], 8, present=colors >= 0) == 0
    late = simple.switch_color(example["video"], case["old"], case["new"], 11)
    colors = m.frame_colors(late, palette)
    assert m.adherence_lag(colors == case["new"], 8, present=colors >= 0) == 3
  assert left >= 4  # the case this guards against is common
  assert m.adherence_lag([True, False, False], 1, present=[True, True, False]) is None
  assert m.adherence_lag([True, False, False], 1, present=[True, False, False]) is None


def test_frame_colours_read_a_blurred_spine_clip_in_its_own_palette():
  """A red object blurred into a yellow background: its core reads orange in the scenes'
  palette, red in the spine's own six colours."""
  from vdm.data import simple
  red, yellow = simple.COLOR_NAMES.index("red"), simple.COLOR_NAMES.index("yellow")
  frame = np.tile(simple.PALETTE[yellow].astype(np.float64), (1, 16, 16, 1))
  frame[0, 5:11, 5:11] = 0.45 * simple.PALETTE[yellow] + 0.55 * simple.PALETTE[red]
  assert scenes.COLOR_NAMES[m.frame_colors(frame)[0]] == "orange"
  assert m.frame_colors(frame, simple.PALETTE)[0] == red


def test_cut_steps_count_a_clean_cut_as_one_and_a_blend_as_several():
  (a, _), (b, _) = test_clips("solid", n=2)
  cut = np.concatenate([a["video"][:5], b["video"][5:]])
  assert m.cut_steps(cut, 5) == 1
  blend = cut.astype(np.float64)
  for k, w in enumerate((0.25, 0.5, 0.75)):  # frames 5, 6, 7 fade from a to b
    blend[5 + k] = (1 - w) * a["video"][5 + k] + w * b["video"][5 + k]
  assert m.cut_steps(np.round(blend).astype(np.uint8), 5) >= 3


def test_nearest_palette_colour():
  for i, rgb in enumerate(scenes.PALETTE):
    assert m.nearest_color(rgb) == i
  with pytest.raises(ValueError, match="must both be"):
    m.trajectory_error(np.zeros((3, 2)), np.zeros((4, 2)))


def test_the_camera_baseline_caption_names_no_camera_move():
  from vdm.data import captions
  from vdm.data.captions import without_camera
  seen = set()
  for i in range(60):
    scene = scenes.sample_scene(scenes.example_rng(0, "test", i), 32, 32, 9, "test", max_objects=1)
    for text in (captions.short_caption(scene), captions.long_caption(scene)):
      stripped = without_camera(text)
      assert "camera" not in stripped.lower(), (text, stripped)
      assert stripped and text.startswith(stripped[:10])  # the rest of the caption is kept
    seen.add(scenes.CAMERAS[scene.camera])
  assert {"static", "pan-left", "zoom-in"} <= seen  # every kind of clause was exercised
