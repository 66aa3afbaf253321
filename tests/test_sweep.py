"""Sweeps: `vdm sample --sweep AXIS=V1,V2,...` writes the clips the single commands write, and
grids that hold their pixels; the step callback leaves the frames' bits alone and can stop a
generation."""
import hashlib
import json
import os

import numpy as np
import pytest

from tests.tiny_models import random_model_dir
from vdm import cli
from vdm.generate import sweep as sweeps


def test_parse_sweep_reads_each_axis_with_its_type():
  assert sweeps.parse_sweep("guidance=1,3,5.5") == ("guidance", [1.0, 3.0, 5.5])
  assert sweeps.parse_sweep("seed= 0, 7") == ("seed", [0, 7])
  assert sweeps.parse_sweep("mode=parallel,rolling") == ("mode", ["parallel", "rolling"])


@pytest.mark.parametrize("spec, message", [
    ("guidance", "AXIS=V1,V2"), ("size=1,2", "AXIS one of"), ("steps=1,2.5", "'2.5' is not"),
    ("seed=1,,2", "none empty"), ("seed=3,3", "given twice"), ("guidance=1,1.0", "given twice")])
def test_parse_sweep_names_the_flag_and_the_fault(spec, message):
  with pytest.raises(ValueError, match="--sweep") as e:
    sweeps.parse_sweep(spec)
  assert message in str(e.value)


def test_sweep_paths_name_each_value():
  paths = sweeps.sweep_paths("out/g.mp4", "guidance", [1.0, 2.5])
  assert paths["clips"] == ["out/g_guidance-1.mp4", "out/g_guidance-2.5.mp4"]
  assert (paths["png"], paths["gif"], paths["json"]) == ("out/g_grid.png", "out/g_grid.gif",
                                                         "out/g_grid.json")


def test_filmstrip_frames_are_evenly_spaced_with_both_ends():
  assert sweeps.filmstrip_frames(9, 8) == [0, 1, 2, 3, 5, 6, 7, 8]
  assert sweeps.filmstrip_frames(3, 8) == [0, 1, 2]
  assert sweeps.filmstrip_frames(33, 5) == [0, 8, 16, 24, 32]


def _clips(lengths, h=4, w=6, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 200, (t, h, w, 3), dtype=np.uint8) for t in lengths]


def test_grid_image_holds_each_clip_frame_at_its_cell():
  clips = _clips([9, 9, 5])
  grid = sweeps.grid_image(clips, columns=4, gutter=2)
  picks = sweeps.filmstrip_frames(9, 4)
  assert grid.shape == (3 * 4 + 2 * 2, 4 * 6 + 3 * 2, 3)
  for r, clip in enumerate(clips):
    for c, t in enumerate(picks):
      cell = grid[r * 6:r * 6 + 4, c * 8:c * 8 + 6]
      np.testing.assert_array_equal(cell, clip[min(t, len(clip) - 1)])  # a short clip holds
  gutter = np.ones(grid.shape[:2], bool)
  for r in range(3):
    for c in range(4):
      gutter[r * 6:r * 6 + 4, c * 8:c * 8 + 6] = False
  assert (grid[gutter] == 255).all()


def test_grid_video_plays_the_clips_side_by_side():
  clips = _clips([5, 3, 5, 5, 5])
  video = sweeps.grid_video(clips, columns=4, gutter=1)
  assert video.shape == (5, 2 * 4 + 1, 4 * 6 + 3, 3)
  for i, clip in enumerate(clips):
    r, c = divmod(i, 4)
    cell = video[:, r * 5:r * 5 + 4, c * 7:c * 7 + 6]
    np.testing.assert_array_equal(cell[:len(clip)], clip)
    np.testing.assert_array_equal(cell[len(clip):], np.repeat(clip[-1:], 5 - len(clip), 0))
  assert (video[:, 4 + 1:, 7:] == 255).all()  # the empty cells of the last row


def test_grids_refuse_clips_of_different_sizes():
  with pytest.raises(ValueError, match="one frame size"):
    sweeps.grid_image(_clips([3]) + _clips([3], h=8))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  return random_model_dir(str(tmp_path_factory.mktemp("tiny") / "model"), seed=3)


def _sha(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def test_cli_sweep_writes_the_single_commands_clips_and_their_grid(model, tmp_path, capsys):
  import mediapy
  import vdm
  base = ["sample", "--prompt", "a red circle moving right", "--seed", "2", "--steps", "2",
          "--checkpoint", model]
  out = str(tmp_path / "g.mp4")
  assert cli.main(base + ["--sweep", "guidance=1,3,5", "--out", out]) == 0
  paths = sweeps.sweep_paths(out, "guidance", [1, 3, 5])
  for value, clip in zip((1, 3, 5), paths["clips"]):
    single = str(tmp_path / f"single_{value}.mp4")
    assert cli.main(base + ["--guidance", str(value), "--out", single]) == 0
    assert _sha(clip) == _sha(single), f"guidance {value}: the sweep's clip differs"
    assert json.load(open(clip[:-4] + ".json"))["request"]["guidance"] == value
  # The grid holds the frames the pipeline gives for each value, pixel for pixel.
  pipe = vdm.Pipeline.load(model)
  frames = [pipe.generate(pipe.resolve("a red circle moving right", seed=2, steps=2, guidance=g),
                          on_step=lambda p: None)["frames"] for g in (1, 3, 5)]
  assert len({f.tobytes() for f in frames}) == 3  # guidance changes the clip
  np.testing.assert_array_equal(mediapy.read_image(paths["png"]), sweeps.grid_image(frames))
  assert mediapy.read_video(paths["gif"]).shape == sweeps.grid_video(frames).shape
  record = json.load(open(paths["json"]))
  assert record["axis"] == "guidance" and record["values"] == [1.0, 3.0, 5.0]
  assert record["clips"] == [os.path.basename(p) for p in paths["clips"]]
  assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--guidance", "2", "--sweep", "guidance=1,3"], "--guidance and --sweep"),
    (["--sweep", "chunk=1,2"], "--chunk: not used by --mode parallel"),
    (["--sweep", "mode=parallel,sideways"], "--mode 'sideways' is not supported"),
    (["--sweep", "guidance=2,500"], "--guidance 500.0 must be"),
    (["--sweep", "colour=1,2"], "--sweep 'colour=1,2' must be AXIS"),
])
def test_cli_sweep_refuses_bad_input_before_writing_anything(model, tmp_path, capsys, extra,
                                                            message):
  argv = ["sample", "--prompt", "a red circle", "--steps", "2", "--checkpoint", model,
          "--out", str(tmp_path / "g.mp4")] + extra
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert message in err and err.startswith("vdm sample: error:")
  assert os.listdir(tmp_path) == []  # every value is checked before the first is sampled


def test_cli_sweep_never_writes_over_an_existing_grid(model, tmp_path, capsys):
  (tmp_path / "g_grid.gif").write_bytes(b"mine")
  argv = ["sample", "--prompt", "a red circle", "--steps", "2", "--checkpoint", model,
          "--sweep", "seed=0,1", "--out", str(tmp_path / "g.mp4")]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert "g_grid.gif" in err and "--overwrite" in err
  assert sorted(os.listdir(tmp_path)) == ["g_grid.gif"]
  assert (tmp_path / "g_grid.gif").read_bytes() == b"mine"


# The two paths a generation takes: one noise-level matrix, or chunks with the KV cache. (Every
# sampler's loop is the same `scan_steps`.)
@pytest.mark.parametrize("mode", ["parallel", "autoregressive"])
def test_step_callback_leaves_the_frames_bits_and_counts_the_steps(model, mode):
  import vdm
  pipe = vdm.Pipeline.load(model)
  request = pipe.resolve("a green square moving up", seed=1, steps=3, mode=mode)
  plain = pipe.generate(request)["frames"]
  seen = []
  reported = pipe.generate(request, on_step=seen.append)["frames"]
  np.testing.assert_array_equal(plain, reported)
  last = seen[-1]
  assert (last.step, last.chunk) == (last.steps, last.chunks)
  assert len(seen) == last.steps * last.chunks
  # 5 frames are 3 latent frames: one matrix of 3 steps, or 3 chunks of 1 frame, 3 steps each.
  assert (last.steps, last.chunks) == ((3, 1) if mode == "parallel" else (3, 3))


@pytest.mark.parametrize("mode", ["parallel", "autoregressive"])
def test_a_callback_that_raises_stops_the_generation_at_that_step(model, mode):
  import vdm
  from vdm.generate.pipeline import Cancelled
  pipe = vdm.Pipeline.load(model)
  request = pipe.resolve("a red circle", seed=0, steps=3, mode=mode)
  seen = []

  def stop(progress):
    seen.append(progress)
    if progress.chunk == 2 or (mode == "parallel" and progress.step == 2):
      raise Cancelled("stop")

  with pytest.raises(Cancelled, match="stop"):
    pipe.generate(request, on_step=stop)
  assert len(seen) == (2 if mode == "parallel" else 4)  # no step after the one that raised
  # The pipeline is usable afterwards and gives the same frames as before.
  again = pipe.generate(request, on_step=lambda p: None)["frames"]
  np.testing.assert_array_equal(again, pipe.generate(request)["frames"])
