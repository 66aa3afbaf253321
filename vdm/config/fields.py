"""The machinery of the config schema: a field's declaration and the checks it can carry.

A schema is a nested dict: section name -> {field name -> Field | nested section}. From it come
a config's defaults (`defaults`), the filling-in of fields an older config lacks (`fill`), and
the per-field validation (`check`). Rules between fields live beside each task's schema.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections


class ConfigError(ValueError):
  """An invalid config value; the message names the field."""


def _is_int(value) -> bool:
  # bool is an int subclass: `--set dit.depth=True` must not pass as depth 1.
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Check:
  """A predicate on one value and the words that say what it allows."""
  ok: Callable[[Any], bool]
  allowed: Any  # str, or words computed when shown (`one_of` a registry)


def integer(low: int | None = None, high: int | None = None, what: str = "") -> Check:
  """An int (not a bool) in [low, high] (either end open when None)."""
  if low is not None and high is not None:
    words = f"an integer in [{low}, {high}]"
  elif low is not None:
    words = f"an integer >= {low}"
  else:
    words = "an integer"
  return Check(lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
               words + (f" ({what})" if what else ""))


def integer_or(low: int, special: int, what: str) -> Check:
  """An int >= low, or the one `special` value (e.g. -1 for 'the rest'), which `what` explains."""
  return Check(lambda v: _is_int(v) and (v >= low or v == special),
               f"an integer >= {low}, or {special} for {what}")


def number(low: float, high: float, *, open_high: bool = False) -> Check:
  """An int or float in [low, high] (or [low, high) with open_high)."""
  if open_high:
    return Check(lambda v: _is_number(v) and low <= v < high, f"a number in [{low}, {high})")
  return Check(lambda v: _is_number(v) and low <= v <= high, f"a number in [{low}, {high}]")


BOOL = Check(lambda v: isinstance(v, bool), "True or False")


def text(what: str = "a string") -> Check:
  return Check(lambda v: isinstance(v, str), what)


class _LazyWords:
  """Words computed when shown (a registry's keys as they are then)."""

  def __init__(self, fn):
    self._fn = fn

  def __str__(self):
    return self._fn()

  def __format__(self, spec):
    return format(str(self), spec)


def one_of(choices: Callable[[], tuple] | tuple) -> Check:
  """A value among `choices`: a tuple, or a function returning one (a registry read when the
  check runs, so modes or data kinds registered later are allowed too)."""
  get_choices = choices if callable(choices) else (lambda: choices)
  return Check(lambda v: isinstance(v, str) and v in tuple(get_choices()),
               _LazyWords(lambda: f"one of {tuple(get_choices())}"))


def int_tuple(low: int = 1, *, non_empty: bool = True) -> Check:
  """A tuple (or JSON list) of ints >= low."""
  return Check(lambda v: isinstance(v, (tuple, list)) and (len(v) > 0 or not non_empty)
               and all(_is_int(x) and x >= low for x in v),
               f"a {'non-empty ' if non_empty else ''}tuple of integers >= {low}")


def str_tuple(what: str) -> Check:
  """A tuple (or JSON list) of strings."""
  return Check(lambda v: isinstance(v, (tuple, list)) and all(isinstance(x, str) for x in v),
               what)


def decreasing_levels() -> Check:
  """A tuple (or JSON list) of numbers in (0, 1], strictly decreasing; empty allowed."""
  def ok(v):
    return (isinstance(v, (tuple, list)) and all(_is_number(x) and 0 < x <= 1 for x in v)
            and all(a > b for a, b in zip(v, v[1:])))
  return Check(ok, "a tuple of decreasing levels in (0, 1] (empty: none)")


_UNSET = object()


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field, declared once.

  default: the value a new config gets.
  doc: one line for `vdm config show` and the docs.
  check: what values are allowed (None: anything).
  legacy: the value a config written before the field existed is given by `fill` (the value
    that reproduces what such a run did); the default unless said otherwise.
  """
  default: Any
  doc: str
  check: Check | None = None
  legacy: Any = _UNSET

  @property
  def old_value(self):
    return self.default if self.legacy is _UNSET else self.legacy


Schema = dict  # name -> Field | Schema


def _value(v):
  return ml_collections.ConfigDict(v) if isinstance(v, dict) else v


def defaults(schema: Schema) -> ml_collections.ConfigDict:
  """A config holding every field of `schema` at its default."""
  config = ml_collections.ConfigDict()
  for name, entry in schema.items():
    config[name] = defaults(entry) if isinstance(entry, dict) else _value(entry.default)
  return config


def fill(config: ml_collections.ConfigDict, schema: Schema) -> ml_collections.ConfigDict:
  """Adds every field `config` lacks at its `legacy` value, in place (an older workdir or model
  directory then reads as today's config of the same run). JSON lists become tuples where the
  default is a tuple. Returns config."""
  for name, entry in schema.items():
    if isinstance(entry, dict):
      if name not in config or config[name] is None:
        with config.unlocked():
          config[name] = ml_collections.ConfigDict()
      fill(config[name], entry)
      continue
    if name not in config:
      with config.unlocked():
        config[name] = _value(entry.old_value)
    elif isinstance(entry.default, tuple) and isinstance(config[name], list):
      with config.unlocked():
        config[name] = tuple(config[name])
  return config


def unknown_fields(config: ml_collections.ConfigDict, schema: Schema, prefix: str = ""):
  """Dotted names in `config` that `schema` does not declare (typos, fields of another task)."""
  for name in config.keys():
    entry = schema.get(name)
    if entry is None:
      yield prefix + name
    elif isinstance(entry, dict) and isinstance(config[name], ml_collections.ConfigDict):
      yield from unknown_fields(config[name], entry, prefix + name + ".")


def require(ok: bool, field: str, value, allowed) -> None:
  """Raises ConfigError naming `field`, its value and what is allowed unless `ok`."""
  if not ok:
    raise ConfigError(f"config field {field}={value!r} is invalid: allowed {allowed}")


def check(config: ml_collections.ConfigDict, schema: Schema, prefix: str = "") -> None:
  """Checks every declared field of `config` against its Check; unknown fields are refused."""
  for name in unknown_fields(config, schema, prefix):
    *parent, leaf = name[len(prefix):].split(".")
    known = schema
    for p in parent:
      known = known[p]
    raise ConfigError(f"config field {name} is unknown; known fields here: {sorted(known)} "
                      "(`vdm config show --config ...` lists them with their docs)")
  for name, entry in schema.items():
    value = config[name]
    if isinstance(entry, dict):
      check(value, entry, prefix + name + ".")
    elif entry.check is not None:
      require(entry.check.ok(value), prefix + name, value, entry.check.allowed)


def get(config, field: str):
  """The value at a dotted field name."""
  node = config
  for name in field.split("."):
    node = node[name]
  return node


def walk(schema: Schema, prefix: str = ""):
  """(dotted name, Field) of every field of a schema, in declaration order."""
  for name, entry in schema.items():
    if isinstance(entry, dict):
      yield from walk(entry, prefix + name + ".")
    else:
      yield prefix + name, entry
