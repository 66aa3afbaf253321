"""The commands and links in the docs are true of the code.

Reads README.md, docs/*.md, experiments/README.md, experiments/*/README.md and
benchmarks/README.md. Convention (docs/testing.md):
  * a fenced block with info string `sh` holds commands, one per line (a trailing backslash
    continues a line, `#` starts a comment);
  * a command ending in `# runs in tests` is also run, from the repository root, with its paths
    under outputs/ redirected to a temporary directory;
  * a value written `$NAME` is the reader's own and is not checked.
Every command is checked without running it: `vdm` lines through vdm's own argparse parser and
config loader, `make` targets against the Makefile, `python -m benchmarks|experiments|pytest`,
`python FILE` and `python -c` against the repository. Any other command fails until a check for
it is added here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
RUN_MARK = "# runs in tests"
README_MAX_LINES = 250
VDM_BIN = os.path.join(os.path.dirname(sys.executable), "vdm")


def doc_files() -> list[str]:
  """The checked markdown files, relative to the repository root."""
  patterns = ("README.md", "docs/*.md", "experiments/README.md", "experiments/*/README.md",
              "benchmarks/README.md")
  found = []
  for pattern in patterns:
    found += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
  return found


@dataclasses.dataclass
class Command:
  where: str  # "FILE:LINE"
  text: str
  argv: list[str]
  runs: bool
  env: dict = dataclasses.field(default_factory=dict)  # leading NAME=value assignments


ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def split_env(argv: list[str]) -> tuple[dict, list[str]]:
  """Leading environment assignments (`XLA_FLAGS=... vdm train ...`) and the command after."""
  env = {}
  while argv and ENV_WORD.match(argv[0]):
    name, _, value = argv[0].partition("=")
    env[name], argv = value, argv[1:]
  return env, argv


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
  """(info string, 1-based line of the first content line, content lines) of each fenced block."""
  blocks, lines, i = [], text.splitlines(), 0
  while i < len(lines):
    m = re.match(r"^\s*(`{3,}|~{3,})(.*)$", lines[i])
    if not m:
      i += 1
      continue
    fence, info, start, body = m.group(1), m.group(2).strip(), i + 1, []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(fence):
      body.append(lines[i])
      i += 1
    blocks.append((info, start + 1, body))
    i += 1
  return blocks


def commands(text: str, name: str) -> list[Command]:
  """The commands of the `sh` blocks of a markdown text."""
  out = []
  for info, first, body in fenced_blocks(text):
    if info.split()[:1] != ["sh"]:
      continue
    pending, pending_line = "", 0
    for offset, line in enumerate(body):
      if not pending:
        pending_line = first + offset
      stripped = line.rstrip()
      if stripped.endswith("\\"):
        pending += stripped[:-1] + " "
        continue
      full, pending = pending + stripped, ""
      env, argv = split_env(shlex.split(full, comments=True))
      if argv:
        out.append(Command(f"{name}:{pending_line}", " ".join(full.split()), argv,
                           full.rstrip().endswith(RUN_MARK), env))
  return out


class DocError(AssertionError):
  pass


def _fail(cmd: Command, message: str):
  raise DocError(f"{cmd.where}: `{cmd.text}`: {message}")


def _placeholder(value: str) -> bool:
  return value.startswith("$")


def _is_produced(path: str, produced: set[str]) -> bool:
  path = os.path.normpath(path)
  return any(path == p or path.startswith(p + os.sep) for p in produced)


def _check_input(cmd: Command, path: str, produced: set[str], what: str):
  """A path the command reads: in the repository, or written by an earlier command."""
  if path is None or _placeholder(path):
    return
  if os.path.exists(os.path.join(ROOT, path)) or _is_produced(path, produced):
    return
  _fail(cmd, f"{what} {path!r} is neither in the repository nor written by an earlier command "
             "in this file")


def _produce(produced: set[str], path: str | None):
  if path and not _placeholder(path):
    produced.add(os.path.normpath(path))


def _parse(parser, argv: list[str], cmd: Command):
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      return parser.parse_args(argv)
  except SystemExit:
    _fail(cmd, f"argparse refused it: {err.getvalue().strip()}")


def _load_config(cmd: Command, spec: str, overrides: list[str], produced: set[str]):
  """Loads --config with its --set overrides; an override whose value is a path that an earlier
  command writes, or the reader's own ($NAME), is applied after validation (its target does not
  exist here)."""
  from vdm.config import apply_override, load_config
  later = [o for o in overrides
           if _is_produced(o.partition("=")[2].strip("'\""), produced)
           or _placeholder(o.partition("=")[2].strip("'\""))]
  try:
    config = load_config(spec, [o for o in overrides if o not in later])
    for item in later:
      apply_override(config, item)
  except Exception as e:  # noqa: BLE001 - any failure to build the config is the finding
    _fail(cmd, f"config {spec!r} with --set {overrides}: {type(e).__name__}: {e}")
  return config


def _allowed_modes() -> tuple[str, ...]:
  from vdm.generate.modes import pipeline_modes
  return pipeline_modes()


def _check_post_spec(cmd: Command, spec: str):
  from vdm.post import parse_pipeline
  try:
    parse_pipeline(spec)
  except ValueError as e:
    _fail(cmd, f"--post {spec!r}: {e}")


def _check_controls(cmd: Command, args, produced: set[str]):
  """--trajectory files exist; --camera moves and --prompts timelines parse (or are files)."""
  from vdm.control.camera import parse_moves
  from vdm.control.timeline import load_timeline
  _check_input(cmd, args.trajectory, produced, "--trajectory")
  for flag, value, parse in (("--camera", args.camera, parse_moves),
                             ("--prompts", args.prompts, load_timeline)):
    if value is None or value.startswith("$"):
      continue
    if value.endswith(".json"):
      _check_input(cmd, value, produced, flag)
    else:
      try:
        parse(value)
      except ValueError as e:
        _fail(cmd, f"{flag} {value!r}: {e}")


def check_vdm(cmd: Command, argv: list[str], produced: set[str]):
  from vdm.cli import EVAL_SUITES, build_parser
  args = _parse(build_parser(), argv, cmd)
  if args.command in ("train", "tokenizer", "config"):
    _check_input(cmd, args.config.partition(":")[0], produced, "--config")
    _load_config(cmd, args.config, args.set, produced)
    if args.command != "config":
      _produce(produced, args.workdir if args.command == "train" else args.out)
  elif args.command == "sample":
    from vdm.diffusion.samplers import SAMPLERS
    from vdm.config import ASPECTS
    modes = _allowed_modes()
    if args.mode is not None and args.mode not in modes:
      _fail(cmd, f"--mode {args.mode!r}: allowed {modes}")
    if args.sampler is not None and args.sampler not in SAMPLERS:
      _fail(cmd, f"--sampler {args.sampler!r}: allowed {tuple(SAMPLERS)}")
    if args.aspect is not None and args.aspect not in ASPECTS:
      _fail(cmd, f"--aspect {args.aspect!r}: allowed {tuple(ASPECTS)}")
    if args.post:
      _check_post_spec(cmd, args.post)
    _check_input(cmd, args.checkpoint, produced, "--checkpoint")
    _check_input(cmd, args.image, produced, "--image")
    _check_input(cmd, args.extend, produced, "--extend")
    _check_controls(cmd, args, produced)
    if args.sweep:  # the clips and grids it writes instead of --out
      from vdm.generate.sweep import parse_sweep, sweep_paths
      try:
        paths = sweep_paths(args.out, *parse_sweep(args.sweep))
      except ValueError as e:
        _fail(cmd, str(e))
      for path in paths["clips"] + [paths["png"], paths["gif"], paths["json"]]:
        _produce(produced, path)
    else:
      _produce(produced, args.out)
    _check_input(cmd, args.audio_from, produced, "--audio-from")
    _check_input(cmd, args.video_from, produced, "--video-from")
    if args.audio or args.audio_from or args.video_from:  # the .wav written beside
      _produce(produced, os.path.splitext(args.out)[0] + ".wav")
  elif args.command == "plan":
    from vdm.train.plan import parse_bytes
    _check_input(cmd, args.config.partition(":")[0], produced, "--config")
    _load_config(cmd, args.config, args.set, produced)
    if args.device_memory is not None:
      try:
        parse_bytes(args.device_memory)
      except ValueError as e:
        _fail(cmd, str(e))
    if args.out:
      _produce(produced, args.out)
  elif args.command in ("models", "ui"):
    for checkpoint in args.checkpoint:
      _check_input(cmd, checkpoint, produced, "--checkpoint")
  elif args.command == "eval":
    suite = args.suite_option or args.suite
    if suite not in EVAL_SUITES:
      _fail(cmd, f"eval suite {suite!r}: allowed {EVAL_SUITES}")
    _check_input(cmd, args.checkpoint, produced, "--checkpoint")
    _produce(produced, args.out)
  elif args.command == "post":
    _check_post_spec(cmd, args.post)
    _check_input(cmd, args.input, produced, "input")
    _produce(produced, args.out)
  elif args.command == "data":
    if args.data_command == "import":
      _check_input(cmd, args.folder, produced, "folder")
    else:
      from configs import data_scenes
      try:
        data_scenes.get_config(args.arg)
      except ValueError as e:
        _fail(cmd, f"vdm data prepare {args.arg!r}: {e}")
    _produce(produced, args.data_dir)
  elif args.command == "convert":
    _check_input(cmd, args.directory, produced, "directory")
    _check_input(cmd, args.generator, produced, "--generator")
    _produce(produced, args.out)
  else:
    _fail(cmd, f"no check for `vdm {args.command}` yet: add one to tests/test_docs.py")


def make_targets() -> set[str]:
  with open(os.path.join(ROOT, "Makefile")) as f:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", f.read(), flags=re.M))


def check_make(cmd: Command, argv: list[str]):
  targets = make_targets()
  for word in argv:
    if "=" not in word and not word.startswith("-") and word not in targets:
      _fail(cmd, f"make target {word!r} is not in the Makefile (targets: {sorted(targets)})")


def _flags(argv: list[str]) -> list[str]:
  return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def check_python(cmd: Command, argv: list[str], produced: set[str]):
  if not argv:
    _fail(cmd, "python with no arguments")
  if argv[0] == "-c":
    try:
      compile(argv[1], cmd.where, "exec")
    except (SyntaxError, IndexError) as e:
      _fail(cmd, f"python -c does not compile: {e}")
    return
  if argv[0] == "-m" and len(argv) > 1:
    module, rest = argv[1], argv[2:]
    if module == "benchmarks":
      from benchmarks.__main__ import BENCHMARKS
      if not rest or rest[0] not in BENCHMARKS:
        _fail(cmd, f"benchmark {rest[:1]}: allowed {BENCHMARKS}")
      with open(os.path.join(ROOT, "benchmarks", f"{rest[0]}.py")) as f:
        source = f.read()
      for flag in _flags(rest[1:]):
        if f'"{flag}"' not in source:
          _fail(cmd, f"benchmarks/{rest[0]}.py has no option {flag}")
      return
    if module.startswith("experiments."):
      try:
        experiment = importlib.import_module(module)
        pva = importlib.import_module("experiments.parallel_vs_ar")
      except ImportError as e:
        _fail(cmd, f"cannot import {module}: {e}")
      calls, err = [], io.StringIO()
      try:  # the training and scoring step stubbed out: only the arguments are checked
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
          # pva.run for the experiments built on it; an experiment's own `run` otherwise.
          for module_with_run in {pva, experiment}:
            if hasattr(module_with_run, "run"):
              mp.setattr(module_with_run, "run", lambda *a, **k: calls.append((a, k)) or 0)
          rc = experiment.main(rest)
      except SystemExit as e:
        _fail(cmd, f"{module} refused its arguments (exit {e.code}): {err.getvalue().strip()}")
      if rc != 0 or not calls:
        _fail(cmd, f"{module}.main returned {rc} without reaching the run")
      return
    if module == "pytest":
      for arg in rest:
        if not arg.startswith("-"):
          _check_input(cmd, arg.split("::")[0], produced, "test path")
      return
    _fail(cmd, f"no check for `python -m {module}` yet: add one to tests/test_docs.py")
  script = argv[0]
  _check_input(cmd, script, produced, "script")
  with open(os.path.join(ROOT, script)) as f:
    source = f.read()
  for flag in _flags(argv[1:]):
    if f'"{flag}"' not in source:
      _fail(cmd, f"{script} has no option {flag}")


PYTHONS = ("python", "python3", ".venv/bin/python")
VDMS = ("vdm", ".venv/bin/vdm")


def check_command(cmd: Command, produced: set[str]) -> None:
  """Raises DocError naming the file, line and problem if `cmd` is stale."""
  head, rest = cmd.argv[0], cmd.argv[1:]
  if head in VDMS:
    check_vdm(cmd, rest, produced)
  elif head == "make":
    check_make(cmd, rest)
  elif head in PYTHONS:
    check_python(cmd, rest, produced)
  elif head.endswith(".sh"):
    path = os.path.join(ROOT, head)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
      _fail(cmd, f"{head} is not an executable script in the repository")
  else:
    _fail(cmd, f"no check for `{head}` commands: write it as a vdm/make/python command, or add "
               "a check to tests/test_docs.py")
  if cmd.runs and head not in VDMS + PYTHONS:
    _fail(cmd, f"only vdm and python commands may be marked {RUN_MARK!r}")


def check_text(text: str, name: str) -> list[Command]:
  """Checks every command of a markdown text in order; returns them."""
  produced: set[str] = set()
  found = commands(text, name)
  for cmd in found:
    check_command(cmd, produced)
  for info, first, body in fenced_blocks(text):
    if info.split()[:1] == ["python"]:
      try:
        compile("\n".join(body), f"{name}:{first}", "exec")
      except SyntaxError as e:
        raise DocError(f"{name}:{first}: python block does not compile: {e}") from None
  return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def broken_links(text: str, name: str) -> list[str]:
  """Relative links of a markdown file (at `name`, relative to the root) that point nowhere."""
  bad = []
  for target in LINK.findall(text):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
      continue  # a URL or an anchor on the same page
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.join(ROOT, name)),
                                         target.split("#")[0]))
    if not path.startswith(ROOT + os.sep) or not os.path.exists(path):
      bad.append(target)
  return bad


def _read(name: str) -> str:
  with open(os.path.join(ROOT, name), encoding="utf-8") as f:
    return f.read()


# ---------------------------------------------------------------------------------------------


def test_readme_is_a_short_guide():
  lines = _read("README.md").count("\n")
  assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_files_are_found():
  files = doc_files()
  assert "README.md" in files and "docs/design.md" in files and "benchmarks/README.md" in files


@pytest.mark.parametrize("name", doc_files())
def test_links_point_to_files_in_the_repository(name):
  text = _read(name)
  assert "../shared" not in text, f"{name} points outside the repository (../shared)"
  assert not broken_links(text, name), f"{name}: broken links {broken_links(text, name)}"


CODE = re.compile(r"`([^`\s]+)`")
REPO_PATH = re.compile(r"^(?:vdm|configs|tests|benchmarks|experiments|colabs|docs|checkpoints)/"
                       r"[\w/.\-]*$")


def stale_references(text: str) -> list[str]:
  """Code spans of a doc that name a repository path (`vdm/data/simple.py`, `configs/sr.py:2`)
  or a vdm object (`vdm.data.simple.is_held_out`) that does not exist; an upper-case part
  (`NAME`) is a placeholder."""
  import importlib
  stale = []
  for span in CODE.findall(text):
    path = span.split(":")[0].split("[")[0]
    if REPO_PATH.match(path) and not re.search(r"[A-Z]{2}", path):
      if not os.path.exists(os.path.join(ROOT, path.rstrip("/"))):
        stale.append(span)
    elif re.match(r"^vdm(\.\w+)+$", span):
      parts = span.split(".")
      for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
          obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
          continue
        for part in parts[i:]:
          obj = getattr(obj, part, None)
        if obj is None:
          stale.append(span)
        break
  return stale


@pytest.mark.parametrize("name", doc_files())
def test_code_references_exist(name, monkeypatch):
  monkeypatch.chdir(ROOT)
  assert not stale_references(_read(name)), f"{name}: {stale_references(_read(name))}"


def test_a_stale_reference_is_found():
  assert stale_references("`vdm/data/synthetic.py` `vdm.data.synthetic.is_held_out` "
                          "`vdm.data.simple.nope` `configs/nope.py:2`") == [
      "vdm/data/synthetic.py", "vdm.data.synthetic.is_held_out", "vdm.data.simple.nope",
      "configs/nope.py:2"]
  assert stale_references("`vdm/data/simple.py` `vdm.data.simple.is_held_out` `configs/sr.py:2` "
                          "`benchmarks/results/NAME.json` `vdm.Pipeline`") == []


def clashing_outputs(cmds: list[Command]) -> list[str]:
  """`vdm sample` and `vdm post` refuse an existing --out without --overwrite: where several
  commands of the docs write one path, a reader who runs them all (in any order) meets that
  refusal unless each of them passes --overwrite. Returns 'WHERE: PATH' of those that do not."""
  writers: dict[str, list[Command]] = {}
  for cmd in cmds:
    argv = cmd.argv
    if argv[0] in VDMS and argv[1:2] in (["sample"], ["post"]) and "--out" in argv:
      writers.setdefault(argv[argv.index("--out") + 1], []).append(cmd)
  return [f"{c.where}: {path}" for path, cs in writers.items() if len(cs) > 1 for c in cs
          if "--overwrite" not in c.argv]


def test_no_two_documented_commands_clash_on_an_output():
  cmds = [c for name in doc_files() for c in commands(_read(name), name)]
  assert not clashing_outputs(cmds), clashing_outputs(cmds)
  clash = commands("```sh\nvdm sample --prompt a --out o.mp4\nvdm post i.mp4 --post 'sharpen()' "
                   "--out o.mp4 --overwrite\n```\n", "x.md")
  assert clashing_outputs(clash) == ["x.md:2: o.mp4"]


# First-person history belongs in commit messages, not in the repo's text.
HISTORY = (re.compile(r"this session|re-measured|git archive", re.I),
           re.compile(r"(?<![\w/])I (?:have|had|did|was|looked|measured|ran|tried|found|think)\b"))


@pytest.mark.parametrize("name", doc_files())
def test_no_first_person_history(name):
  found = [m.group(0) for pattern in HISTORY for m in pattern.finditer(_read(name))]
  assert not found, f"{name}: {found}"


@pytest.mark.parametrize("name", doc_files())
def test_commands_are_current(name, monkeypatch):
  monkeypatch.chdir(ROOT)  # configs/..., checkpoints/... are relative to the root
  check_text(_read(name), name)


def _runnable() -> list[str]:
  return [n for n in doc_files() if any(c.runs for c in commands(_read(n), n))]


def _redirect(arg: str, out_dir: str) -> str:
  return os.path.join(out_dir, arg) if arg.startswith("outputs/") else arg


@pytest.mark.parametrize("name", _runnable())
def test_marked_commands_run(name, tmp_path):
  """Runs every `# runs in tests` command of a file, in order; each must exit 0 and write its
  --out. Outputs go to tmp_path/outputs/."""
  env = dict(os.environ, VDM_NO_PROGRESS="1")
  for cmd in (c for c in commands(_read(name), name) if c.runs):
    head, rest = cmd.argv[0], [_redirect(a, str(tmp_path)) for a in cmd.argv[1:]]
    if head in VDMS:
      exe = ([VDM_BIN] if os.path.exists(VDM_BIN) else
             [sys.executable, "-c", "import sys; from vdm.cli import main; sys.exit(main())"])
    else:
      exe = [sys.executable]
    t0 = time.perf_counter()
    proc = subprocess.run(exe + rest, cwd=ROOT, env=dict(env, **cmd.env), capture_output=True,
                          text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, (f"{cmd.where}: `{cmd.text}` exited {proc.returncode} after "
                                  f"{seconds:.1f}s:\n{proc.stderr[-3000:]}")
    if "--out" in rest:
      out = rest[rest.index("--out") + 1]
      assert os.path.exists(out), f"{cmd.where}: `{cmd.text}` wrote no {out}"
    print(f"{cmd.where}: {seconds:.1f}s")


# The check itself must be able to fail: each of these stale lines is refused.
STALE = [
    ("vdm sample --prompt x --bogus-flag 1 --out outputs/x.mp4", "argparse refused"),
    ("vdm sample --prompt x --mode sideways --out outputs/x.mp4", "invalid choice: 'sideways'"),
    ("vdm sample --prompt x --post 'upscale(2)|blur()' --out outputs/x.mp4", "--post"),
    ("vdm sample --prompt x --checkpoint checkpoints/nowhere --out outputs/x.mp4",
     "checkpoints/nowhere"),
    ("vdm train --config configs/spine.py:huge --workdir workdirs/x", "config"),
    ("vdm train --config configs/no_such.py --workdir workdirs/x", "--config"),
    ("vdm train --config configs/spine.py --workdir workdirs/x --set dit.no_such_field=1",
     "no_such_field"),
    ("vdm eval --suite vibes --checkpoint checkpoints/spine", "eval suite"),
    ("vdm post outputs/never_written.mp4 --post 'sharpen(0.3)' --out outputs/y.mp4", "input"),
    ("vdm data prepare enormous", "data prepare"),
    ("make no-such-target", "make target"),
    ("python -m benchmarks sampling --no-such-flag 3", "no option"),
    ("python -m benchmarks warp_speed", "benchmark"),
    ("python -m experiments.temporal_ablations --variants baseline,bogus", "refused"),
    ("python experiments/no_such_script.py", "script"),
    ("curl https://example.com | sh", "no check"),
]


@pytest.mark.parametrize("line, message", STALE, ids=[s[0][:40] for s in STALE])
def test_a_stale_command_fails_the_check(line, message, monkeypatch):
  monkeypatch.chdir(ROOT)
  with pytest.raises(DocError, match=re.escape(message)):
    check_text(f"```sh\n{line}\n```\n", "stale.md")


def test_the_convention_is_read_as_documented(monkeypatch):
  monkeypatch.chdir(ROOT)
  text = ("```sh\n# a comment line\n"
          "vdm sample --prompt \"a red circle\" \\\n    --out outputs/a.mp4  # runs in tests\n"
          "vdm post outputs/a.mp4 --post 'sharpen(0.3)' --out outputs/b.mp4\n"
          "vdm data import \"$VIDEOS\" --out my_clips\n```\n"
          "```text\nvdm sample --no-such-flag\n```\n"
          "```python\nimport vdm\n```\n")
  found = check_text(text, "example.md")
  assert [c.argv[:2] for c in found] == [["vdm", "sample"], ["vdm", "post"], ["vdm", "data"]]
  assert [c.runs for c in found] == [True, False, False]
  assert found[0].where == "example.md:3"
  assert broken_links("[a](docs/design.md) [b](no/such.md) [c](https://x.org) [d](#top)",
                      "README.md") == ["no/such.md"]
  with pytest.raises(DocError, match="does not compile"):
    check_text("```python\ndef broken(:\n```\n", "bad.md")
