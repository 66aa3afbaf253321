"""Pipeline strings: "upscale(2)|deflicker(0.5)|grade(lut=film.cube)|sharpen(0.3)|stabilize()".

Grammar (whitespace allowed between tokens):
  pipeline := stage ('|' stage)*
  stage    := NAME [ '(' [arg (',' arg)*] ')' ]
  arg      := [NAME '='] value
  value    := number | 'quoted' | "quoted" | true | false | none | bare word (e.g. film.cube)
Positional arguments fill the stage's parameters in order (see `STAGES`). Every error, syntax or
argument, is a `PipelineError` that carries the character position and prints a caret under it.
Arguments are validated (and LUT files read) while parsing, so a bad spec fails before any video
is read.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Callable, Sequence

import numpy as np

from vdm.post import common
from vdm.post import deflicker as _deflicker
from vdm.post import grade as _grade
from vdm.post import sharpen as _sharpen
from vdm.post import stabilize as _stabilize
from vdm.post import upscale as _upscale
from vdm.post.lut import Lut

# name -> (stage function, validate function). A validate function's parameters, in order, are
# the stage's arguments; it returns them normalised or raises ValueError naming the field.
STAGES: dict[str, tuple[Callable, Callable]] = {
    "upscale": (_upscale.upscale, _upscale.validate),
    "deflicker": (_deflicker.deflicker, _deflicker.validate),
    "grade": (_grade.grade, _grade.validate),
    "sharpen": (_sharpen.sharpen, _sharpen.validate),
    "stabilize": (_stabilize.stabilize, _stabilize.validate),
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = set("(),|=")


class PipelineError(ValueError):
  """A syntax or argument error in a pipeline string, at character `position` (0-based)."""

  def __init__(self, message: str, spec: str, position: int):
    self.message, self.spec, self.position = message, spec, position
    super().__init__(f"{message} (at position {position})\n  {spec}\n  {' ' * position}^")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One parsed stage: name, validated keyword arguments, and where it starts in the spec."""
  name: str
  kwargs: dict
  position: int = 0

  def __call__(self, frames, *, chunk: int = common.DEFAULT_CHUNK):
    return STAGES[self.name][0](frames, **self.kwargs, chunk=chunk)


class _Scanner:
  def __init__(self, spec: str):
    self.spec, self.pos = spec, 0

  def error(self, message: str, position: int | None = None) -> PipelineError:
    return PipelineError(message, self.spec, self.pos if position is None else position)

  def skip(self):
    while self.pos < len(self.spec) and self.spec[self.pos].isspace():
      self.pos += 1

  def peek(self) -> str:
    self.skip()
    return self.spec[self.pos] if self.pos < len(self.spec) else ""

  def expect(self, char: str, what: str):
    if self.peek() != char:
      found = repr(self.peek()) if self.peek() else "the end"
      raise self.error(f"expected {what}, found {found}")
    self.pos += 1

  def name(self, what: str) -> tuple[str, int]:
    self.skip()
    m = _NAME.match(self.spec, self.pos)
    if not m:
      found = repr(self.peek()) if self.peek() else "the end"
      raise self.error(f"expected {what}, found {found}")
    self.pos = m.end()
    return m.group(), m.start()

  def value(self):
    self.skip()
    start = self.pos
    if self.peek() in ("'", '"'):
      quote = self.spec[self.pos]
      end = self.spec.find(quote, self.pos + 1)
      if end < 0:
        raise self.error("unterminated string", start)
      self.pos = end + 1
      return self.spec[start + 1:end]
    while (self.pos < len(self.spec) and self.spec[self.pos] not in _SPECIAL
           and not self.spec[self.pos].isspace()):
      self.pos += 1
    word = self.spec[start:self.pos]
    if not word:
      found = repr(self.peek()) if self.peek() else "the end"
      raise self.error(f"expected a value, found {found}", start)
    return _convert(word)


def _convert(word: str):
  low = word.lower()
  if low in ("true", "false"):
    return low == "true"
  if low == "none":
    return None
  for kind in (int, float):
    try:
      return kind(word)
    except ValueError:
      pass
  return word


def _parse_stage(sc: _Scanner) -> Stage:
  name, name_pos = sc.name("a stage name")
  if name not in STAGES:
    raise sc.error(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}", name_pos)
  signature = inspect.signature(STAGES[name][1]).parameters
  params = list(signature)
  # Keyword-only options (after '*') are named, never given by position.
  positional = [k for k, p in signature.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
  args, where = {}, {}
  if sc.peek() == "(":
    sc.pos += 1
    keyword_seen = False
    while sc.peek() != ")":
      if args:
        sc.expect(",", "',' or ')'")
      sc.skip()
      arg_pos = sc.pos
      m = _NAME.match(sc.spec, sc.pos)
      after = sc.spec[m.end():].lstrip()[:1] if m else ""
      if m and after == "=":
        key = m.group()
        sc.pos = m.end()
        sc.expect("=", "'='")
        if key not in params:
          raise sc.error(f"{name}: unknown argument {key!r}; allowed: {', '.join(params)}",
                         arg_pos)
        keyword_seen = True
      else:
        if keyword_seen:
          raise sc.error(f"{name}: positional argument after a keyword argument", arg_pos)
        if len(args) >= len(positional):
          raise sc.error(f"{name}: takes at most {len(positional)} arguments "
                         f"({', '.join(positional)})", arg_pos)
        key = positional[len(args)]
      if key in args:
        raise sc.error(f"{name}: argument {key!r} given twice", arg_pos)
      args[key] = sc.value()
      where[key] = arg_pos
    sc.pos += 1
  try:
    kwargs = STAGES[name][1](**args)
  except (ValueError, OSError) as e:
    # Point at the offending argument when the message names it ("grade: lut_interp must ...").
    field = next((k for k in where if str(e).startswith(f"{name}: {k} ")), None)
    raise sc.error(str(e), where.get(field, name_pos)) from None
  return Stage(name, kwargs, name_pos)


def parse_pipeline(spec: str) -> list[Stage]:
  """Parses and validates a pipeline string; returns its stages in order."""
  if not isinstance(spec, str):
    raise TypeError(f"pipeline spec must be a string, got {type(spec).__name__}")
  sc = _Scanner(spec)
  stages = [_parse_stage(sc)]
  while sc.peek() == "|":
    sc.pos += 1
    stages.append(_parse_stage(sc))
  if sc.peek():
    raise sc.error(f"expected '|' or the end, found {sc.peek()!r}")
  return stages


def format_pipeline(stages: Sequence[Stage]) -> str:
  """The canonical pipeline string of parsed stages (all arguments as keywords)."""
  def fmt(v):
    if isinstance(v, Lut):
      return repr(v.title or "<lut>")
    return repr(v) if isinstance(v, str) else str(v)
  return "|".join(f"{s.name}(" + ", ".join(f"{k}={fmt(v)}" for k, v in s.kwargs.items()
                                          if v is not None) + ")" for s in stages)


def apply_pipeline(frames, spec_or_stages: str | Sequence[Stage], *,
                   chunk: int = common.DEFAULT_CHUNK) -> np.ndarray:
  """Runs a pipeline over frames [T, H, W, 3] (uint8 or float in [0, 1]); returns that dtype.

  Between stages the clip is kept as float32, so quantisation happens once, at the end. The
  output size changes only through upscale.
  """
  stages = parse_pipeline(spec_or_stages) if isinstance(spec_or_stages, str) else spec_or_stages
  frames = common.check_frames(frames, "pipeline")
  chunk = common.check_chunk(chunk)
  x = common.to_float(frames)
  for stage in stages:
    x = stage(x, chunk=chunk)
  return common.like(x, frames)
