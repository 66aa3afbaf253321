"""Pipeline strings (parser, positions of errors), apply_pipeline, and the `vdm post` command."""
import argparse

import numpy as np
import pytest

from vdm.post.cli import add_post_arguments, run_post_command
from vdm.post.grade import grade
from vdm.post.lut import identity_table, write_cube
from vdm.post.chain import (PipelineError, Stage, apply_pipeline, format_pipeline,
                            parse_pipeline)
from vdm.post.sharpen import sharpen
from vdm.post.upscale import upscale


def test_parses_the_issue_example(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  write_cube("film.cube", identity_table(17), title="film")
  stages = parse_pipeline(" upscale(2) | deflicker(0.5)|grade(lut=film.cube)|sharpen(0.3)|stabilize()")
  assert [s.name for s in stages] == ["upscale", "deflicker", "grade", "sharpen", "stabilize"]
  assert [s.position for s in stages] == [1, 14, 29, 50, 63]
  assert stages[0].kwargs["factor"] == 2 and stages[3].kwargs["amount"] == 0.3
  assert stages[2].kwargs["lut"].size == 17
  s = parse_pipeline("grade(exposure=-0.5, lut_interp='tetrahedral', gamma=1e0)|stabilize")
  assert s[0].kwargs["exposure"] == -0.5 and s[0].kwargs["lut_interp"] == "tetrahedral"
  assert s[1] == Stage("stabilize", dict(smoothing=15.0, border="crop", max_shift=0.1), 58)
  assert parse_pipeline(format_pipeline(s[:1]))[0].kwargs == s[0].kwargs


@pytest.mark.parametrize("spec, position, message", [
    ("upscale(2", 9, r"expected ',' or '\)', found the end"),
    ("upscale(2)|", 11, "expected a stage name"),
    ("upscale(2)||sharpen()", 11, "expected a stage name, found '|'"),
    ("upscal(2)", 0, "unknown stage 'upscal'"),
    ("sharpen(0.3) stabilize()", 13, "expected '|' or the end, found 's'"),
    ("grade(foo=1)", 6, "grade: unknown argument 'foo'"),
    ("upscale(method=lanczos, 2)", 24, "positional argument after a keyword"),
    ("upscale(2, bicubic, m, 1, 3)", 26, "takes at most 4 arguments"),
    ("upscale(2, factor=3)", 11, "'factor' given twice"),
    ("upscale(,)", 8, "expected a value, found ','"),
    ("grade(lut='abc)", 10, "unterminated string"),
    ("deflicker(0.2)|upscale(20)", 23, r"upscale: factor must be a number in \[1, 8\], got 20"),
    ("grade(gamma=2, lut_interp=cubic)", 15, "grade: lut_interp must be one of"),
    ("grade(lut=missing.cube)", 6, "missing.cube' does not exist"),
    ("", 0, "expected a stage name, found the end"),
])
def test_errors_report_position(spec, position, message):
  with pytest.raises(PipelineError, match=message) as info:
    parse_pipeline(spec)
  assert info.value.position == position
  # The message shows the spec with a caret under the error.
  lines = str(info.value).splitlines()
  assert lines[-1].index("^") - 2 == position and lines[-2] == "  " + spec


def test_apply_pipeline_equals_stages_in_sequence():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (4, 12, 16, 3)).astype(np.uint8)
  out = apply_pipeline(frames, "upscale(2, lanczos)|grade(contrast=1.2)|sharpen(0.5)", chunk=3)
  x = frames.astype(np.float32) / 255
  ref = sharpen(grade(upscale(x, 2, "lanczos"), contrast=1.2), 0.5)
  assert out.shape == (4, 24, 32, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(int) - np.round(ref * 255)).max() <= 1


def _args(argv):
  return add_post_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_post_command_round_trip(tmp_path, capsys):
  from vdm.video_io import read_video, write_video
  src, dst = str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4")
  frames = np.zeros((6, 32, 48, 3), np.uint8)
  frames[:, 8:24, 16:32] = 200
  write_video(src, frames, fps=12)
  assert run_post_command(_args([src, "--post", "upscale(2)|grade(exposure=0.5)", "--out", dst])) == 0
  out = read_video(dst)
  assert out.shape == (6, 64, 96, 3)
  assert (tmp_path / "out.json").exists()
  # Exists without --overwrite: refused, file untouched; bad spec: refused before reading.
  assert run_post_command(_args([src, "--post", "sharpen()", "--out", dst])) == 2
  assert run_post_command(_args([src, "--post", "sharpen(9)", "--out", dst, "--overwrite"])) == 2
  err = capsys.readouterr().err
  assert "exists" in err and "sharpen: amount must be" in err and "^" in err
  assert read_video(dst).shape == (6, 64, 96, 3)
  assert run_post_command(_args([str(tmp_path / "nope.mp4"), "--post", "sharpen()",
                                 "--out", str(tmp_path / "x.mp4")])) == 2


def test_probe_reads_the_header_and_names_a_corrupt_file(tmp_path):
  from vdm.video_io import probe_video, write_video
  good, bad = str(tmp_path / "good.mp4"), str(tmp_path / "bad.mp4")
  write_video(good, np.zeros((7, 16, 24, 3), np.uint8), fps=8)
  assert probe_video(good) == (7, 16, 24)
  with open(good, "rb") as f:
    payload = f.read()
  with open(bad, "wb") as f:
    f.write(payload[len(payload) // 2:])  # header gone
  with pytest.raises(ValueError, match="bad.mp4.*not a readable video"):
    probe_video(bad)
  with pytest.raises(FileNotFoundError):
    probe_video(str(tmp_path / "missing.mp4"))
