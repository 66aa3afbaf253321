"""Configs: one schema per task, loading with overrides, `upgrade` of old configs, validation.

A config is `configs/<name>.py[:arg]`: the module's `get_config(arg)` builds an ml_collections
ConfigDict. Every field a run reads is declared once, with its default, allowed values and a doc
line, in the task's schema (`vdm/config/t2v.py`, `vdm/config/sr.py`, `vdm/config/distill.py`); `vdm config show` prints
them. On every load (a config file, a workdir's config.json, a model directory) the config goes
through `upgrade` (fields an older config lacks get the value that reproduces what it did) and
`validate` (each field's check, then the rules between fields), so the code reads
`config.dit.temporal_patch` directly, never with a fallback.

Why ml_collections plus a schema, not a typed dataclass tree: configs are ConfigDicts that
users already write and `--set` edits by dotted name, model directories store them as JSON, and
every module reads them by attribute; the schema adds the one declaration of each field (default,
allowed values, doc) and the one place it is checked, without a second config type to convert to
and from.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os

import ml_collections

from vdm.config import distill as _distill
from vdm.config import fields as _fields
from vdm.config import sr as _sr
from vdm.config import t2v as _t2v
from vdm.config.fields import ConfigError, Field, walk
from vdm.config.t2v import ASPECTS, spatial_stride

# task -> (schema, rules between fields). `config.task` picks one (t2v when absent).
TASKS = {"t2v": (_t2v.SCHEMA, _t2v.validate), "sr": (_sr.SCHEMA, _sr.validate),
         "distill": (_distill.SCHEMA, _distill.validate)}

# Fields renamed or moved since model directories were first written: old dotted name -> new.
# `upgrade` moves them, so an old workdir or model directory reads as today's config.
RENAMED: dict[str, str] = {}


def task_of(config) -> str:
  task = config["task"] if "task" in config else "t2v"
  if task not in TASKS:
    raise ConfigError(f"config field task={task!r} is invalid: allowed one of {tuple(TASKS)}")
  return task


def schema_of(config) -> dict:
  return TASKS[task_of(config)][0]


def defaults(task: str = "t2v") -> ml_collections.ConfigDict:
  """A config of `task` with every field at its default (for t2v: the spine)."""
  return _fields.defaults(TASKS[task][0])


def section(path: str, task: str = "t2v", **values) -> ml_collections.ConfigDict:
  """One section of the defaults (e.g. 'diffusion', 'train.dit') with `values` set; for calling
  a function that takes a section (the loss, a model's from_config) outside a whole config."""
  node = defaults(task)
  for name in path.split("."):
    node = node[name]
  for key, value in values.items():
    if key not in node:
      raise ConfigError(f"config field {path}.{key} is unknown; known: {sorted(node.keys())}")
    node[key] = value
  return node


def upgrade(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Brings a config written by any earlier vdm to today's fields, in place, and returns it:
  renamed fields move (`RENAMED`), and every field it lacks gets its `legacy` value (the value
  that reproduces what that run did; the default unless the field's declaration says
  otherwise). Run on every load: config files, workdirs, model directories."""
  for old, new in RENAMED.items():
    *parents, leaf = old.split(".")
    node = config
    for name in parents:
      node = node[name] if name in node else None
      if node is None:
        break
    if node is not None and leaf in node:
      value = node[leaf]
      with node.unlocked():
        del node[leaf]
      *new_parents, new_leaf = new.split(".")
      target = config
      for name in new_parents:
        target = target[name]
      with target.unlocked():
        target[new_leaf] = value
  if "task" not in config:
    with config.unlocked():
      config.task = "t2v"
  return _fields.fill(config, schema_of(config))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field (type and range, unknown fields refused), then the rules between
  fields; raises ConfigError naming the first bad field."""
  schema, rules = TASKS[task_of(config)]
  try:
    _fields.check(config, schema)
  except KeyError as e:  # a field the schema declares is missing: upgrade() was not run
    raise ConfigError(f"config field {e.args[0]} is missing (run vdm.config.upgrade on configs "
                      "written by hand)") from None
  rules(config)


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Builds the config named by 'path/to/config.py[:arg]', upgrades it to the whole schema,
  applies 'a.b=value' overrides and validates it."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"--config: no such file {path!r} (expected configs/<name>.py[:arg])")
  _check_config_file(path)
  module_spec = importlib.util.spec_from_file_location("vdm_user_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg or None)
  except ValueError as e:  # a config's own argument check ("unknown argument ...")
    raise ConfigError(str(e)) from None
  config = upgrade(config)
  for item in overrides:
    apply_override(config, item)
  validate(config)
  return config


def _check_config_file(path: str) -> None:
  """A config file is the user's own Python: a syntax error or a missing get_config() in it is
  bad input, reported as such instead of as a traceback from the import."""
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), filename=path)
  except UnicodeDecodeError:
    raise ConfigError(f"--config {path!r} is not a Python text file") from None
  except SyntaxError as e:
    raise ConfigError(f"--config {path!r} is not valid Python: {e.msg} (line {e.lineno})") from None
  if not any(isinstance(node, ast.FunctionDef) and node.name == "get_config"
             for node in tree.body):
    raise ConfigError(f"--config {path!r} defines no get_config(arg) (see configs/spine.py)")


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Sets one 'dotted.field=value' (value parsed as a Python literal, else kept as a string)."""
  key, sep, raw = item.partition("=")
  if not sep:
    raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. train.dit.steps=100")
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
      raise ConfigError(f"--set {key}: unknown field {name!r}")
    node = node[name]
  if leaf not in node:
    raise ConfigError(f"--set {key}: unknown field; known: {sorted(node.keys())}")
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise ConfigError(f"--set {key}: {key} is a section; set one of its fields: "
                      f"{sorted(node[leaf].keys())}")
  try:
    node[leaf] = value
  except (TypeError, ValueError):
    raise ConfigError(f"--set {key}={raw}: expected {type(node[leaf]).__name__} like "
                      f"{node[leaf]!r}, got {type(value).__name__} {value!r}") from None


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A config from the JSON a workdir or model directory stores, upgraded to today's fields."""
  return upgrade(ml_collections.ConfigDict(json.loads(text)))


def describe(config: ml_collections.ConfigDict) -> str:
  """Every field of a config, one per line: name = value, and the doc (with the default when the
  value differs from it). `vdm config show` prints this."""
  lines = []
  for name, field in walk(schema_of(config)):
    value = _fields.get(config, name)
    default = field.default
    changed = (list(value) if isinstance(value, tuple) else value) != (
        list(default) if isinstance(default, tuple) else default)
    note = f"  [default {default!r}]" if changed else ""
    lines.append(f"{name} = {value!r}{note}\n    {field.doc}")
  return "\n".join(lines)


__all__ = ["ASPECTS", "ConfigError", "Field", "RENAMED", "TASKS", "apply_override",
           "config_from_json", "defaults", "describe", "load_config", "section",
           "spatial_stride", "upgrade", "validate"]
