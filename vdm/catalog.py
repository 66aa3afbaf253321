"""The models there are: model directories (what `vdm sample --checkpoint` reads) and named
configs (what `vdm train --config` trains), each with its size, resolution, the modes it runs
and its features. `vdm models` prints them; `vdm ui` offers the directories.

Nothing is loaded but config files and tokenizers: sizes are the closed-form parameter counts of
`vdm.models` (the upscaler's from an abstract build), so listing a 2B-parameter config is instant.
"""
from __future__ import annotations

import glob
import importlib
import json
import math
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS_DIR = os.path.join(REPO, "configs")

# Features a model may have, each decided from its config: name -> (doc, predicate(config)).
# The code that adds a feature registers how its configs show it (`register_feature`); until
# then no config has the section the predicate looks for, and the feature reads False.
FEATURES: dict = {}


def register_feature(name: str, doc: str, predicate) -> None:
  """Adds a feature column: predicate(t2v config) -> bool says whether a model has it."""
  FEATURES[name] = (doc, predicate)


register_feature("audio", "generates sound with the picture",
                 lambda c: "audio" in c and bool(c.audio.enabled))
register_feature("control", "takes trajectory, camera or timeline controls",
                 lambda c: "control" in c and bool(c.control.trajectory or c.control.camera))
register_feature("few_step", "distilled to sample in a few steps (or a few-step generator's "
                 "levels in sample.timesteps)",
                 lambda c: "distill" in c or bool(c.sample.timesteps))


def default_roots() -> list[str]:
  """Where models are looked for when none are named: the repository's checkpoints/, and
  checkpoints/ and workdirs/*/model under the working directory."""
  roots = [os.path.join(REPO, "checkpoints"), "checkpoints", "workdirs"]
  seen, out = set(), []
  for root in roots:
    if os.path.isdir(root) and os.path.realpath(root) not in seen:
      seen.add(os.path.realpath(root))
      out.append(root)
  return out


def _is_model_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "config.json"))


def find_model_dirs(paths: list[str] | None = None) -> list[str]:
  """Model directories among `paths` (default `default_roots()`): a path that is one, or the
  model directories one or two levels under it (checkpoints/NAME, workdirs/NAME/model).
  A named path that does not exist raises ValueError naming --checkpoint."""
  found = []
  for path in default_roots() if paths is None else paths:
    if not os.path.isdir(path):
      raise ValueError(f"--checkpoint {path!r}: no such directory")
    if _is_model_dir(path):
      found.append(path)
      continue
    children = sorted(glob.glob(os.path.join(path, "*"))) + sorted(
        glob.glob(os.path.join(path, "*", "model")))
    found += [c for c in children if os.path.isdir(c) and _is_model_dir(c)]
  unique = []
  for path in found:
    if os.path.realpath(path) not in {os.path.realpath(p) for p in unique}:
      unique.append(path)
  return unique


def _t2v_summary(config, vocab_size: int) -> dict:
  from vdm.config import spatial_stride
  from vdm.generate.modes import MODES, pipeline_modes
  from vdm.models import denoiser_param_count
  d, s = config.diffusion, config.sample
  runs = [m for m in pipeline_modes()
          if config.dit.temporal_patch == 1 or MODES[m].temporal_patch]
  per_frame = d.per_frame_levels_prob > 0 or d.teacher_forcing or d.causal_prob > 0
  return dict(
      params=denoiser_param_count(config, vocab_size),
      resolution=f"{s.resolution}px {s.aspect}",
      trained_on=f"{config.data.height}x{config.data.width}, {config.data.frames} frames at "
                 f"{config.data.fps} fps",
      stride=spatial_stride(config),
      modes=runs,
      # A model trained with one shared level per clip has only seen parallel denoising.
      trained_for=list(runs) if per_frame else ["parallel"],
      features={name: bool(predicate(config)) for name, (_, predicate) in FEATURES.items()},
      sample=dict(s.to_dict()))


def _sr_summary(config) -> dict:
  from flax import nnx
  from vdm.models import count_params
  from vdm.post.sr import build
  return dict(params=count_params(nnx.eval_shape(lambda: build(config))),
              resolution=f"x{config.factor} upscaler (vdm post --post upscale)",
              trained_on=f"{config.data.kind} clips", modes=[], trained_for=[],
              features={name: False for name in FEATURES})


def describe_model_dir(path: str) -> dict:
  """One model directory: dict(kind='model', path, name, task, params, resolution, modes,
  trained_for, features, ...); a directory that cannot be read gets dict(error=...) instead."""
  from vdm.config import ConfigError, upgrade, validate
  import ml_collections
  entry = dict(kind="model", path=path)
  try:
    with open(os.path.join(path, "config.json")) as f:
      config = upgrade(ml_collections.ConfigDict(json.load(f)))
    validate(config)
    entry.update(name=config.name, task=config.task)
    if config.task == "sr":
      entry.update(_sr_summary(config))
    else:
      from vdm.models import check_model_dir
      from vdm.text.tokenizer import Tokenizer
      check_model_dir(path)
      vocab = Tokenizer.load(os.path.join(path, "tokenizer.model")).vocab_size
      entry.update(_t2v_summary(config, vocab))
  except (OSError, ValueError, TypeError, AttributeError, ConfigError, RuntimeError) as e:
    entry["error"] = " ".join(str(e).split())
  return entry


def named_configs() -> list[str]:
  """`configs/<file>.py[:NAME]` for every config file and each NAME in its `NAMES` (the
  arguments it documents; a file without NAMES is listed by its default)."""
  specs = []
  for path in sorted(glob.glob(os.path.join(CONFIGS_DIR, "*.py"))):
    module = os.path.splitext(os.path.basename(path))[0]
    if module.startswith("_"):
      continue
    names = getattr(importlib.import_module(f"configs.{module}"), "NAMES", (None,))
    specs += [f"configs/{module}.py" + (f":{n}" if n else "") for n in names]
  return specs


def describe_config(spec: str) -> dict:
  """One named config: what a model trained from it would be (as `describe_model_dir`)."""
  from vdm.config import load_config
  entry = dict(kind="config", path=spec)
  try:
    config = load_config(os.path.join(REPO, spec))
    entry.update(name=config.name, task=config.task)
    entry.update(_sr_summary(config) if config.task == "sr" else
                 _t2v_summary(config, config.text.vocab_size))
  except ValueError as e:  # includes ConfigError: a file that needs an argument, or no model
    entry["error"] = " ".join(str(e).split())
  return entry


def _shown(path: str) -> str:
  """A path relative to the working directory when it is under it."""
  relative = os.path.relpath(path)
  return path if relative.startswith("..") else relative


def list_models(checkpoints: list[str] | None = None, *, configs: bool = True) -> list[dict]:
  """Model directories (under `checkpoints`, default `default_roots()`), then named configs."""
  entries = [describe_model_dir(_shown(p)) for p in find_model_dirs(checkpoints)]
  if configs:
    entries += [describe_config(spec) for spec in named_configs()]
  return entries


def _count(n: int | None) -> str:
  if not n:
    return "-"
  exponent = min(int(math.log10(n)) // 3, 3)
  return f"{n / 1000 ** exponent:.3g}{['', 'K', 'M', 'B'][exponent]}"


def describe_models(entries: list[dict]) -> str:
  """The table `vdm models` prints, one line per entry and a legend of the features."""
  header = ("kind", "path", "params", "resolution", "trained on", "modes", "features")
  rows = []
  for e in entries:
    if "error" in e:
      rows.append((e["kind"], e["path"], "-", "-", "-", "-", e["error"][:100]))
      continue
    runs, trained = e["modes"], e["trained_for"]
    modes = ("all " + str(len(runs)) if runs and trained == runs else
             ", ".join(trained) + (f" (runs {len(runs)})" if len(runs) > len(trained) else ""))
    features = ", ".join(name for name, has in e["features"].items() if has) or "-"
    rows.append((e["kind"], e["path"], _count(e["params"]), e["resolution"], e["trained_on"],
                 modes or "-", features))
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header) - 1)]
  lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[-1])
           for r in [header] + rows]
  legend = "; ".join(f"{name}: {doc}" for name, (doc, _) in FEATURES.items())
  return "\n".join(lines + ["", "modes: the modes it was trained for (runs N: the modes it can "
                                "run); features: " + legend])
