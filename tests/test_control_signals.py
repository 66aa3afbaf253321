"""Control signals (vdm/control): trajectory, camera and timeline parsing against closed forms and
the scenes data's own records; every bad input names its field; the DiT's feature maps."""
import json

import numpy as np
import pytest

from vdm.control import camera, features, timeline, trajectory
from vdm.data import scenes

CLIP = dict(frames=9, height=32, width=32)


# ------------------------------------------------------------------------------- trajectories

def test_keypoints_interpolate_linearly_and_hold():
  spec = {"objects": [{"keypoints": [{"frame": 2, "x": 4, "y": 10},
                                     {"frame": 6, "x": 12, "y": 2}]}]}
  paths = trajectory.load_trajectory(spec, max_objects=3, **CLIP)
  assert paths.shape == (1, 9, 2)
  np.testing.assert_allclose(paths[0, :3], [[4, 10]] * 3)   # held before the first keypoint
  np.testing.assert_allclose(paths[0, 4], [8, 6])           # halfway
  np.testing.assert_allclose(paths[0, 6:], [[12, 2]] * 3)   # held after the last


def test_dense_points_fraction_units_and_json_round_trip(tmp_path):
  points = [[t / 8, 0.5] for t in range(9)]
  paths = trajectory.load_trajectory({"units": "fraction", "objects": [{"points": points}]},
                                     max_objects=3, **CLIP)
  np.testing.assert_allclose(paths[0, :, 0], np.arange(9) / 8 * 31, rtol=1e-6)
  file = tmp_path / "path.json"
  file.write_text(json.dumps(trajectory.to_json(paths)))
  np.testing.assert_allclose(trajectory.load_trajectory(str(file), max_objects=3, **CLIP), paths,
                             atol=1e-4)


@pytest.mark.parametrize("spec, words", [
    ({"objects": [{"points": [[1, 1]] * 8}]}, "objects[0].points: needs one [x, y] per frame: 9"),
    ({"objects": [{"points": [[1, 1]] * 3 + [[40, 1]] + [[1, 1]] * 5}]},
     "objects[0] frame 3: point (40, 1) is outside the 32x32 frame"),
    ({"objects": [{"keypoints": [{"frame": 0, "x": 1, "y": 1}, {"frame": 0, "x": 2, "y": 2}]}]},
     "keypoints[1].frame: keypoint frames must increase"),
    ({"objects": [{"keypoints": [{"frame": 9, "x": 1, "y": 1}]}]},
     "frame: must be an integer in [0, 8]"),
    ({"objects": [{"points": [[1, 1]] * 9}] * 4}, "objects: must be a list of 1 to 3"),
    ({"objects": [{"path": []}]}, "objects[0]: unknown keys ['path']"),
    ({"objects": [{"points": [[1, 1]] * 9}], "unit": "px"}, "unknown keys ['unit']"),
    ({"units": "inches", "objects": []}, "units: must be one of ['pixels', 'fraction']"),
])
def test_bad_trajectories_name_the_field(spec, words):
  with pytest.raises(ValueError) as e:
    trajectory.load_trajectory(spec, max_objects=3, **CLIP)
  assert str(e.value).startswith("--trajectory ") and words in str(e.value), str(e.value)


def test_trajectory_file_errors(tmp_path):
  with pytest.raises(ValueError, match="no such file"):
    trajectory.load_trajectory(str(tmp_path / "missing.json"), max_objects=3, **CLIP)
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    trajectory.load_trajectory(str(bad), max_objects=3, **CLIP)


# ------------------------------------------------------------------------------- cameras

def test_moves_closed_forms():
  path = camera.load_camera("pan(2,-1)", **CLIP)
  np.testing.assert_allclose(path[:, 0], 1.0)
  np.testing.assert_allclose(path[:, 1:], -np.arange(9)[:, None] * [2, -1])
  zoom = camera.load_camera("zoom(1.5)", **CLIP)
  np.testing.assert_allclose(zoom[[0, -1], 0], [1.0, 1.5], rtol=1e-6)
  centre = np.array([15.5, 15.5])
  np.testing.assert_allclose(zoom[:, :1] * centre + zoom[:, 1:], [centre] * 9, atol=1e-4)
  shaken = camera.load_camera("shake(1.5, 3)", **CLIP)
  assert np.all(shaken[0] == [1, 0, 0]) and np.abs(shaken[1:, 1:]).max() <= 1.5
  np.testing.assert_array_equal(shaken, camera.load_camera("shake(1.5,3)", **CLIP))
  np.testing.assert_allclose(camera.load_camera("static()", **CLIP), [[1, 0, 0]] * 9)


@pytest.mark.parametrize("kind", ["pan-left", "pan-right", "pan-up", "pan-down", "zoom-in",
                                  "zoom-out"])
def test_moves_reproduce_the_data_cameras(kind):
  """The scenes data's recorded camera of every kind is one move of the grammar."""
  scene = scenes.Scene(height=32, width=32, frames=9, objects=(), background=0,
                       camera=scenes.CAMERAS.index(kind), camera_amount=1.4 if "zoom" in kind
                       else 6.0, camera_speed=0)
  step = scene.camera_amount / 8
  spec = {"pan-left": f"pan({-step}, 0)", "pan-right": f"pan({step}, 0)",
          "pan-up": f"pan(0, {-step})", "pan-down": f"pan(0, {step})",
          "zoom-in": "zoom(1.4)", "zoom-out": f"zoom({1 / 1.4})"}[kind]
  np.testing.assert_allclose(camera.load_camera(spec, **CLIP), scenes.camera_transforms(scene),
                             rtol=1e-5, atol=1e-4)


def test_step_transforms_compose_to_the_path():
  path = camera.load_camera("pan(1.5,0.5)+zoom(1.3)", **CLIP).astype(np.float64)
  steps = camera.step_transforms(path)
  p = np.array([[3.0, 7.0], [20.0, 25.0]])  # world points
  image = p * path[0, 0] + path[0, 1:]
  for t, (r, ox, oy) in enumerate(steps):
    image = r * image + [ox, oy]
    np.testing.assert_allclose(image, p * path[t + 1, 0] + path[t + 1, 1:], atol=1e-9)


@pytest.mark.parametrize("spec, words", [
    ("orbit(3)", "'orbit(3)' is not a move"),
    ("pan(2)", "pan() takes 2 numbers, got 1"),
    ("pan(a,b)", "arguments must be numbers"),
    ("zoom(9)", "zoom(f) needs f in [0.25, 4.0]"),
    ("shake(20)", "shake(a) needs a in [0, 8] px"),
    ("pan(20,0)", "'pan(20,0)': frame 4: offset (-80, 0) must be within +-64 px"),
    ({"path": [[1, 0, 0]] * 8}, "path: needs one [s, tx, ty] per frame: shape (9, 3)"),
    ({"path": [[1, 0, 0]] * 8 + [[-1, 0, 0]]}, "path[8]: scale s=-1 must be in [0.25, 4.0]"),
    ({"moves": "pan(1,0)", "path": []}, "needs exactly one of 'moves' or 'path'"),
])
def test_bad_cameras_name_the_field(spec, words):
  with pytest.raises(ValueError) as e:
    camera.load_camera(spec, **CLIP)
  assert str(e.value).startswith("--camera ") and words in str(e.value), str(e.value)


def test_camera_json_file(tmp_path):
  file = tmp_path / "cam.json"
  file.write_text(json.dumps({"moves": "pan(1,0)"}))
  np.testing.assert_allclose(camera.load_camera(str(file), **CLIP),
                             camera.load_camera("pan(1,0)", **CLIP))


# ------------------------------------------------------------------------------- timelines

def test_text_timeline_parses_and_shares_prompts():
  tl = timeline.load_timeline("0s: a red circle; 1s recache: a blue circle; 2.5s cut: "
                              "a red circle")
  assert tl.prompts == ("a red circle", "a blue circle")
  assert [(s.start, s.prompt, s.switch) for s in tl.segments] == [
      (0.0, 0, None), (1.0, 1, "recache"), (2.5, 0, "cut")]
  assert timeline.load_timeline(tl.to_json()) == tl


@pytest.mark.parametrize("spec, words", [
    ({"prompts": ["a", "b"], "segments": [{"start": 0, "prompt": 0}, {"start": 1, "prompt": 2}]},
     "segments[1].prompt: unknown prompt index 2: allowed 0 to 1"),
    ({"prompts": ["a", "b"], "segments": [{"start": 0, "end": 1.5, "prompt": 0},
                                          {"start": 1, "prompt": 1}]},
     "segments[0].end: 1.5 s overlaps segments[1].start 1 s"),
    ({"prompts": ["a", "b"], "segments": [{"start": 0, "end": 0.5, "prompt": 0},
                                          {"start": 1, "prompt": 1}]},
     "segments[0].end: 0.5 s leaves a gap before segments[1].start"),
    ({"prompts": ["a", "b"], "segments": [{"start": 0, "prompt": 0}, {"start": 0, "prompt": 1}]},
     "segments[1].start: 0 s overlaps the segment before it"),
    ({"prompts": ["a"], "segments": [{"start": 0.5, "prompt": 0}]},
     "segments[0].start: the first segment must start at 0"),
    ({"prompts": ["a"], "segments": [{"start": 0, "prompt": 0, "switch": "fade"}]},
     "segments[0].switch: must be one of ['keep', 'recache', 'cut']"),
    ({"prompts": ["a", "b"], "segments": [{"start": 0, "prompt": 0}]},
     "prompts: prompts [1] are never used"),
    ("0s: a; 1 s fade: b", "entry 2: switch 'fade' must be one of"),
    ("0s: a; two seconds: b", "entry 2: 'two seconds: b' is not 'TIME s"),
    ("1s: a", "entry 1.start: the first segment must start at 0"),
])
def test_bad_timelines_name_the_field(spec, words):
  with pytest.raises(ValueError) as e:
    timeline.load_timeline(spec)
  assert str(e.value).startswith("--prompts ") and words in str(e.value), str(e.value)


def test_schedule_on_chunks():
  """17 frames at 8 fps, td 2: latent frames start at pixel frames 0, 1, 3, ..., 15."""
  tl = timeline.load_timeline("0s: a; 1s: b; 1.5s cut: a")
  bounds = [(i, i + 1) for i in range(9)]
  sched = timeline.schedule(tl, bounds, fps=8, temporal_downsample=2, seconds=17 / 8)
  # Chunk c starts at pixel frame 2c - 1 (c >= 1): 1 s = frame 8 -> first chunk at or after is
  # c = 5 (frame 9); 1.5 s = frame 12 -> c = 7 (frame 13).
  assert sched.prompt == (0, 0, 0, 0, 0, 1, 1, 0, 0)
  assert sched.switch == ("", "", "", "", "", "keep", "", "cut", "")
  assert list(sched.shots(bounds)) == [0] * 7 + [1] * 2
  with pytest.raises(ValueError, match=r"segments\[1\].start: 3 s is not before the end"):
    timeline.schedule(timeline.load_timeline("0s: a; 3s: b"), bounds, fps=8,
                      temporal_downsample=2, seconds=17 / 8)
  with pytest.raises(ValueError, match=r"segments\[1\]: starting at 1 s, it is replaced"):
    timeline.schedule(timeline.load_timeline("0s: a; 1s: b; 1.1s: a"), bounds, fps=8,
                      temporal_downsample=2, seconds=17 / 8)


# ------------------------------------------------------------------------------- features

def test_pixel_frames_of_latents():
  np.testing.assert_array_equal(features.pixel_frames_of_latents(9, 2),
                                [[0, 0], [1, 2], [3, 4], [5, 6], [7, 8]])


def test_trajectory_tokens_put_each_blob_at_its_centre():
  """Reassembled from the tokens, slot k's map of each pixel frame peaks at (and has its
  centroid at) object k's requested centre, to a fraction of a pixel; other slots are zero."""
  rng = np.random.default_rng(0)
  paths = np.stack([rng.uniform(8, 23, (9, 2)), np.full((9, 2), np.nan)])  # object 1: no path
  tokens = features.trajectory_tokens(paths, height=32, width=32, stride=8, temporal_downsample=2,
                                      objects=3, sigma=1.5)
  assert tokens.shape == (5, 16, 8 * 8 * 2 * 3)
  maps = tokens.reshape(5, 4, 4, 8, 8, 2, 3).transpose(0, 5, 1, 3, 2, 4, 6).reshape(5, 2, 32, 32,
                                                                                    3)
  groups = features.pixel_frames_of_latents(9, 2)
  ys, xs = np.mgrid[0:32, 0:32]
  for l in range(5):
    for j in range(2):
      m = maps[l, j, ..., 0]
      centroid = [(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()]
      np.testing.assert_allclose(centroid, paths[0, groups[l, j]], atol=1e-3)
  assert not maps[..., 1:].any()


def test_camera_features():
  path = camera.load_camera("pan(2,0)+zoom(1.2)", **CLIP)
  f = features.camera_frames(path, height=32, width=32, temporal_downsample=2)
  assert f.shape == (5, features.camera_feature_size(temporal_downsample=2)) == (5, 13)
  np.testing.assert_allclose(f[:, -1], 1.0)
  np.testing.assert_allclose(f[-1, 6:9], [np.log(1.2), path[8, 1] / 32, path[8, 2] / 32],
                             rtol=1e-5)
  np.testing.assert_allclose(f[0, :6], 0.0, atol=1e-7)  # frame 0: identity, no step
  assert not features.no_camera(9, 2).any()


def test_camera_tokens_are_the_displacement_field_of_the_path():
  """Per token: where its content was in frame 0 and in the frame before (in tokens). A pan is
  one offset everywhere, growing by the pan per frame; a zoom's grows with the distance from the
  zoom's fixed point; a still camera is all zeros but the given-flag."""
  stride, td = 8, 2
  size = features.camera_token_feature_size(temporal_downsample=td)
  still = features.camera_tokens(camera.load_camera("static()", **CLIP), height=32, width=32,
                                 stride=stride, temporal_downsample=td)
  assert still.shape == (5, 16, size) == (5, 16, 9)
  assert not still[..., :-1].any() and np.all(still[..., -1] == 1)
  path = np.array([[1.0, 1.5 * f, -0.5 * f] for f in range(9)])  # content moves (1.5, -0.5)/frame
  pan = features.camera_tokens(path, height=32, width=32, stride=stride, temporal_downsample=td)
  groups = features.pixel_frames_of_latents(9, td)
  for l in range(5):
    for j, f in enumerate(groups[l]):
      since_first, since_previous = pan[l, :, 4 * j:4 * j + 2], pan[l, :, 4 * j + 2:4 * j + 4]
      np.testing.assert_allclose(since_first, np.broadcast_to([-1.5 * f / stride, 0.5 * f / stride],
                                                              (16, 2)), atol=1e-6)
      np.testing.assert_allclose(since_previous, 0.0 if f == 0 else np.broadcast_to(
          [-1.5 / stride, 0.5 / stride], (16, 2)), atol=1e-6)
  zoom = np.array([[1.25, 0.0, 0.0]] * 9)  # s = 1.25 about the origin from frame 1 on
  zoom[0] = [1.0, 0.0, 0.0]
  z = features.camera_tokens(zoom, height=32, width=32, stride=stride, temporal_downsample=td)
  centres = np.array([[x, y] for y in (3.5, 11.5, 19.5, 27.5) for x in (3.5, 11.5, 19.5, 27.5)])
  np.testing.assert_allclose(z[1, :, 0:2], (centres / 1.25 - centres) / stride, atol=1e-6)
  np.testing.assert_allclose(z[1, :, 2:4], (centres / 1.25 - centres) / stride, atol=1e-6)  # f1
  np.testing.assert_allclose(z[1, :, 6:8], 0.0, atol=1e-6)  # frame 2: no step since frame 1
