"""Every `vdm` subcommand on bad input: exit code 2 and one line on stderr,
'vdm <command>: error: ...', naming what is wrong; never a Python traceback.

Our own checks print exactly that one line; argparse's usage errors print the usage first and
end with the same kind of line. A few cases run the installed `vdm` entry point in a subprocess.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_invalid_inputs import model_dir  # noqa: F401 - the zero-weight tiny model fixture
from vdm import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "configs/spine.py:tiny"


@pytest.fixture()
def bad(tmp_path, model_dir):  # noqa: F811
  """Paths for the cases: {name} in an argument is replaced by the path named `name`."""
  from PIL import Image
  from vdm.video_io import write_video
  p = dict(tmp=str(tmp_path), model=model_dir)
  def put(name, text=None, data=None):
    p[name] = str(tmp_path / name)
    if text is not None:
      (tmp_path / name).write_text(text)
    if data is not None:
      (tmp_path / name).write_bytes(data)
  put("afile", text="x")                                   # a file where a folder is wanted
  put("notes.mp4", text="a text file, not a video\n" * 9)  # a non-video with a video's name
  put("notes.txt", text="hello\n")
  put("bad.png", data=b"not a png")
  put("bad_syntax.py", text="def get_config(arg:\n")
  put("no_get_config.py", text="x = 1\n")
  put("binary.py", data=bytes(range(256)) * 4)
  put("folder")
  os.makedirs(p["folder"])
  put("corrupt_model")                                     # a model directory with a bad config
  os.makedirs(p["corrupt_model"])
  for name in ("config.json", "tokenizer.model", "latent_stats.json"):
    with open(os.path.join(p["corrupt_model"], name), "w") as f:
      f.write("{ not json")
  for name in ("vae", "denoiser"):
    os.makedirs(os.path.join(p["corrupt_model"], name))
  # A model directory whose denoiser checkpoint is damaged (its metadata overwritten).
  put("damaged_model")
  shutil.copytree(model_dir, p["damaged_model"])
  with open(os.path.join(p["damaged_model"], "denoiser", "_METADATA"), "w") as f:
    f.write("{}")
  put("in.mp4")
  write_video(p["in.mp4"], np.zeros((4, 16, 16, 3), np.uint8), fps=8)
  put("exists.mp4", data=b"keep me")
  put("photo.png")
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p["photo.png"])
  put("videos")
  os.makedirs(p["videos"])
  p["missing"] = str(tmp_path / "missing")
  p["out"] = str(tmp_path / "out")  # nothing may appear under this name
  return p


# (argv, text the message must contain); argv[0] names the subcommand ('data import' is two).
CASES = [
    (["plan", "--config", TINY, "--device-memory", "lots"], "--device-memory"),
    (["plan", "--config", TINY, "--devices", "0"], "--devices"),
    (["train", "--config", TINY, "--workdir", "{out}", "--num-processes", "2"], "--num-processes"),
    (["train", "--config", "{bad_syntax.py}", "--workdir", "{out}"], "not valid Python"),
    (["train", "--config", "{no_get_config.py}", "--workdir", "{out}"], "get_config"),
    (["train", "--config", "{binary.py}", "--workdir", "{out}"], "--config"),
    (["train", "--config", "{missing}.py", "--workdir", "{out}"], "--config"),
    (["train", "--config", "configs/spine.py:nonsense", "--workdir", "{out}"], "nonsense"),
    (["train", "--config", TINY, "--workdir", "{afile}"], "--workdir"),
    (["train", "--config", TINY, "--workdir", "{afile}/sub"], "--workdir"),
    (["train", "--config", TINY, "--workdir", "{out}", "--seed", "-5"], "--seed"),
    (["train", "--config", TINY, "--workdir", "{out}", "--seed", str(2**40)], "--seed"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "dit.nope=1"], "dit.nope"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "dit.depth='deep'"], "dit.depth"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "seed.x=3"], "seed"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "dit=3"], "dit is a section"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "dit.depth=("], "expected int"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "seed=4294967296"], "seed"),
    # The dataset a config names is not there: refused before the workdir records the config.
    (["train", "--config", "configs/folder_t2v.py:nope,16x16_t9,tiny", "--set",
      "data.data_dir='{tmp}'", "--workdir", "{out}"], "data.name='nope'"),
    (["train", "--config", "configs/folder_t2v.py:nope", "--workdir", "{out}"], "NAME,BUCKET"),
    (["tokenizer", "--config", "{bad_syntax.py}", "--out", "{out}"], "--config"),
    (["tokenizer", "--config", TINY, "--out", "{out}", "--num-captions", "0"], "--num-captions"),
    (["tokenizer", "--config", TINY, "--out", "{folder}"], "--out"),
    (["tokenizer", "--config", TINY, "--out", "{afile}/tok.model"], "--out"),
    (["tokenizer", "--config", TINY, "--out", "{out}", "--set", "nope.x=1"], "unknown field"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{afile}/x.mp4"],
     "--out"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.avi"],
     "--out"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{exists.mp4}"],
     "--overwrite"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{folder}", "--out", "{out}.mp4"],
     "--checkpoint"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{corrupt_model}", "--out",
      "{out}.mp4"], "--checkpoint"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{damaged_model}", "--out",
      "{out}.mp4"], "cannot be read"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--post", "nope()"], "--post"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--post", "sharpen(9)"], "--post"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--extend", "{notes.mp4}"], "--extend"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--image", "{bad.png}"], "--image"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--context-noise", "-1"], "--context-noise"),
    # Options a mode or suite does not read are refused, not dropped.
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--mode", "parallel", "--chunk", "1"], "--chunk: not used by --mode parallel"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--mode", "parallel", "--no-kv-cache"], "--no-kv-cache: not used by --mode parallel"),
    (["eval", "coherence", "--checkpoint", "{model}", "--guidance", "3", "--out", "{out}.json"],
     "--guidance: not used by the coherence suite"),
    (["eval", "coherence", "--checkpoint", "{model}", "--lengths", "0", "--out", "{out}.json"],
     "--lengths"),
    (["train", "--config", TINY, "--workdir", "{out}", "--set", "vae.init_from='{missing}'"],
     "vae.init_from"),
    (["sample", "--prompt", "a red circle", "--checkpoint", "{model}", "--out", "{out}.mp4",
      "--mode", "image_to_video", "--image", "{photo.png}", "--context-noise", "0.1"],
     "--context-noise: not used by --mode image_to_video (only by autoregressive, rolling, "
     "keyframes_first)"),
    (["eval", "vae", "--checkpoint", "{model}", "--steps", "10", "--out", "{out}.json"],
     "--steps: not used by the vae suite"),
    (["eval", "upscale", "--checkpoint", "{model}", "--seed", "3", "--out", "{out}.json"],
     "--seed: not used by the upscale suite"),
    (["eval", "adherence", "--checkpoint", "{model}", "--lengths", "1,2", "--out", "{out}.json"],
     "--lengths: not used by the adherence suite"),
    (["eval", "fvd", "--checkpoint", "{model}"], "eval suite"),
    (["eval", "adherence", "--checkpoint", "{missing}"], "--checkpoint"),
    (["eval", "adherence", "--checkpoint", "{corrupt_model}", "--out", "{out}.json"],
     "--checkpoint"),
    (["eval", "adherence", "--checkpoint", "{model}", "--num", "0", "--out", "{out}.json"],
     "--num"),
    (["eval", "rollout", "--checkpoint", "{model}", "--lengths", "a,b", "--out", "{out}.json"],
     "--lengths"),
    (["eval", "rollout", "--checkpoint", "{model}", "--lengths", "0", "--out", "{out}.json"],
     "--lengths"),
    (["eval", "adherence", "--checkpoint", "{model}", "--out", "{afile}/x.json"], "--out"),
    (["eval", "upscale", "--checkpoint", "{model}", "--out", "{out}.json"], "upscaler"),
    (["data", "import", "{missing}", "--out", "x", "--data-dir", "{out}"], "not a folder"),
    (["data", "import", "{afile}", "--out", "x", "--data-dir", "{out}"], "not a folder"),
    (["data", "import", "{videos}", "--out", "bad-name", "--data-dir", "{out}"], "--out"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{afile}"], "--data-dir"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{out}", "--lengths", "a"],
     "--lengths"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{out}", "--aspects", "4:3"],
     "--aspects"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{out}", "--aspects", ","],
     "--aspects"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{out}", "--short-side", "4"],
     "--short-side"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{out}", "--fps", "0"], "--fps"),
    (["data", "prepare", "nonsense", "--data-dir", "{out}"], "nonsense"),
    (["data", "prepare", "tiny", "--data-dir", "{afile}"], "--data-dir"),
    (["post", "{missing}.mp4", "--post", "sharpen()", "--out", "{out}.mp4"], "no such video"),
    (["post", "{notes.mp4}", "--post", "sharpen()", "--out", "{out}.mp4"], "not a readable video"),
    (["post", "{in.mp4}", "--post", "sharpen(", "--out", "{out}.mp4"], "--post"),
    (["post", "{in.mp4}", "--post", "grade(lut={notes.txt})", "--out", "{out}.mp4"], "--post"),
    (["post", "{in.mp4}", "--post", "upscale(2, method=learned, model={model})", "--out",
      "{out}.mp4"], "upscaler"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{out}.avi"], "--out"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{afile}/x.mp4"], "--out"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{exists.mp4}"], "--overwrite"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{in.mp4}", "--overwrite"], "differ"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{out}.mp4", "--fps", "0"], "--fps"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{out}.mp4", "--fps", "nan"], "--fps"),
    (["post", "{in.mp4}", "--post", "sharpen()", "--out", "{out}.mp4", "--chunk", "0"],
     "--chunk"),
    (["eval", "prediction", "--checkpoint", "{model}", "--samples", "0", "--out", "{out}.json"],
     "--samples"),
    (["eval", "prediction", "--checkpoint", "{model}", "--num", "1", "--out", "{out}.json"],
     "not a video-prediction model"),
    (["eval", "vae", "--checkpoint", "checkpoints/sr_x2", "--out", "{out}.json"],
     "not a vdm model directory"),
    (["config", "show", "--config", "{missing}.py"], "--config"),
    (["eval", "control", "--checkpoint", "{model}", "--num", "0", "--out", "{out}.json"],
     "--num 0"),
    (["eval", "av-sync", "--checkpoint", "{model}", "--out", "{out}.json"], "makes no sound"),
    (["models", "--checkpoint", "{missing}"], "--checkpoint"),
    (["ui", "--checkpoint", "checkpoints/sr_x2", "--port", "0"], "no text-to-video model"),
    (["ui", "--port", "-5"], "--port"),
    (["convert", "{missing}", "--out", "{out}"], "not a Wan2.1 directory"),
    (["config", "show", "--config", "{bad_syntax.py}"], "not valid Python"),
    (["config", "show", "--config", "configs/spine.py:nonsense"], "nonsense"),
    (["config", "show", "--config", TINY, "--set", "dit.nope=1"], "dit.nope"),
    (["config", "show", "--config", TINY, "--set", "dit.depth=("], "expected int"),
    (["config", "show", "--config", "configs/sr.py:2", "--set", "degrade.kernels=('box',)"],
     "degrade.kernels"),
]

# argparse's own errors: the usage, then 'vdm <command>: error: ...' naming the argument.
USAGE_CASES = [
    ([], "vdm", "command"),
    (["frobnicate"], "vdm", "frobnicate"),
    (["train", "--config", TINY], "vdm train", "--workdir"),
    (["train", "--config", TINY, "--workdir", "{out}", "--until", "deploy"], "vdm train",
     "--until"),
    (["sample", "--out", "{out}.mp4"], "vdm sample", "--prompt"),
    (["sample", "--prompt", "x", "--out", "{out}.mp4", "--steps", "many"], "vdm sample",
     "--steps"),
    (["eval", "adherence", "--num", "x"], "vdm eval", "--num"),
    (["data"], "vdm data", "data_command"),
    (["data", "import", "{videos}"], "vdm data import", "--out"),
    (["post", "{in.mp4}", "--out", "{out}.mp4"], "vdm post", "--post"),
    (["tokenizer", "--config", TINY], "vdm tokenizer", "--out"),
    (["config", "show"], "vdm config", "--config"),
    (["config", "frob", "--config", TINY], "vdm config", "frob"),
]


def _subcommands(parser, prefix=()) -> set[tuple[str, ...]]:
  """Every leaf command of an argparse parser: ('train',), ('data', 'import'), ..."""
  import argparse
  found = set()
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for name, sub in action.choices.items():
        found |= _subcommands(sub, prefix + (name,)) or {prefix + (name,)}
  return found


def test_every_subcommand_and_suite_has_bad_input_cases():
  leaves = _subcommands(cli.build_parser())  # what `vdm --help` lists, `data` split in two
  assert {("train",), ("config",), ("data", "import"), ("data", "prepare")} <= leaves
  covered = {tuple(argv[:2]) if argv[0] == "data" else (argv[0],) for argv, _ in CASES}
  assert leaves <= covered, leaves - covered
  suites = {argv[1] for argv, _ in CASES if argv[0] == "eval"}
  assert set(cli.EVAL_SUITES) <= suites, set(cli.EVAL_SUITES) - suites


def _fill(argv, paths):
  return [re.sub(r"\{([\w.]+)\}", lambda m: paths[m.group(1)], a) for a in argv]


def _run(argv, capsys):
  """cli.main's exit code and stderr lines; an exception escaping main fails the test."""
  try:
    code = cli.main(argv)
  except SystemExit as e:
    code = e.code
  return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _command(argv):
  return " ".join(argv[:2]) if argv[0] == "data" else argv[0]


@pytest.mark.parametrize("argv, names", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_bad_input_gets_one_line(argv, names, bad, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  code, lines = _run(_fill(argv, bad), capsys)
  assert code == 2 and len(lines) == 1, lines
  assert lines[0].startswith(f"vdm {_command(argv)}: error: ") and names in lines[0], lines
  assert not any(os.path.exists(bad["out"] + s) for s in ("", ".mp4", ".avi", ".json"))
  assert open(bad["exists.mp4"], "rb").read() == b"keep me"


@pytest.mark.parametrize("argv, prog, names", USAGE_CASES,
                         ids=[" ".join(c[0][:3]) or "no-command" for c in USAGE_CASES])
def test_usage_errors_end_with_the_error_line(argv, prog, names, bad, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  code, lines = _run(_fill(argv, bad), capsys)
  assert code == 2 and lines[0].startswith("usage: "), lines
  assert lines[-1].startswith(f"{prog}: error: ") and names in lines[-1], lines
  assert not any("Traceback" in line for line in lines)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(bad, capsys, tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o555)
  try:
    code, lines = _run(["post", bad["in.mp4"], "--post", "sharpen()", "--out",
                        str(locked / "x.mp4")], capsys)
  finally:
    locked.chmod(0o755)
  assert code == 2 and lines == [f"vdm post: error: --out {str(locked / 'x.mp4')!r}: "
                                 f"{str(locked)!r} is not writable"]


def test_check_output_path_creates_nothing(tmp_path):
  target = tmp_path / "a" / "b" / "clip.mp4"
  cli.check_output_path(str(target), "--out")
  cli.check_output_path(str(tmp_path / "a" / "w"), "--workdir", folder=True)
  assert not (tmp_path / "a").exists()


def _entry_point():
  path = shutil.which("vdm", path=os.path.dirname(sys.executable)) or shutil.which("vdm")
  if path is None:
    pytest.skip("the vdm entry point is not installed")
  return path


@pytest.mark.parametrize("argv, command", [
    (["post", "{missing}.mp4", "--post", "sharpen()", "--out", "{out}.mp4"], "post"),
    (["data", "import", "{videos}", "--out", "x", "--data-dir", "{afile}"], "data import"),
    (["train", "--config", "{bad_syntax.py}", "--workdir", "{out}"], "train"),
    (["tokenizer", "--config", TINY, "--out", "{folder}"], "tokenizer"),
], ids=["post", "data-import", "train", "tokenizer"])
def test_entry_point_in_a_subprocess(argv, command, bad):
  proc = subprocess.run([_entry_point(), *_fill(argv, bad)], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert len(lines) == 1 and lines[0].startswith(f"vdm {command}: error: "), lines


@pytest.mark.parametrize("mode", ["autoregressive", "rolling", "keyframes_first"])
def test_chunked_modes_read_chunk_and_context_noise(mode, bad, capsys):
  """What the mode registry calls chunked takes --chunk and --context-noise (docs/add-a-mode.md
  runs keyframes_first with --chunk 2): refused for the others, never for these."""
  out = os.path.join(bad["tmp"], f"{mode}.mp4")
  code, lines = _run(["sample", "--prompt", "a red circle", "--checkpoint", bad["model"],
                      "--mode", mode, "--chunk", "1", "--context-noise", "0.1", "--steps", "2",
                      "--out", out], capsys)
  assert code == 0 and os.path.exists(out), lines


def test_output_piped_into_head_ends_quietly():
  """`vdm config show ... | head -3`: the reader closes the pipe before the command writes (here
  at once, so the write always meets a closed pipe); no error line, no traceback."""
  proc = subprocess.Popen([_entry_point(), "config", "show", "--config", TINY], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  proc.stdout.close()
  stderr = proc.stderr.read()
  proc.wait(timeout=300)
  assert stderr == "" and proc.returncode == 1, stderr
