"""Prompt timelines: which prompt holds when, and what happens to the context at each switch.

A timeline is a list of prompts and segments in time order. Each segment starts at a time (s)
and plays one prompt until the next segment starts. Generation is chunked (autoregressive or
rolling), so a switch takes effect at the first chunk that starts at or after its time (never
earlier): each chunk attends to its own segment's prompt. At a switch the earlier frames are
handled as the segment's `switch` says:

    keep     earlier chunks stay as they were computed, under their own prompt
    recache  the context in the KV cache is re-encoded under the new prompt (LongLive's recache)
    cut      a hard cut: a new shot that sees nothing before it

Text form (`vdm sample --prompts`): entries "TIME s [keep|recache|cut]: PROMPT" joined with ';',

    "0s: a red circle moving right; 2s: a blue circle moving right; 4s cut: a green square"

JSON (`--prompts timeline.json`; docs/control.md):

    {"prompts": ["a red circle moving right", "a blue circle moving right"],
     "segments": [{"start": 0, "end": 2, "prompt": 0},
                  {"start": 2, "prompt": 1, "switch": "recache"}]}

Segments must start at 0 and follow one another without overlap or gap ("end", optional, must
equal the next segment's start); each error names the field.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

SWITCHES = ("keep", "recache", "cut")
_FLAG = "--prompts"
_ENTRY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*s\s*(?:\s([a-z]+))?\s*:(.*)$", re.S)
_EPS = 1e-6  # seconds: a chunk starting this close after a switch time starts the segment


@dataclasses.dataclass(frozen=True)
class Segment:
  """start: seconds; prompt: index into the timeline's prompts; switch: what happens to the
  earlier frames when this segment starts (None: the request's default policy)."""
  start: float
  prompt: int
  switch: str | None = None


@dataclasses.dataclass(frozen=True)
class Timeline:
  prompts: tuple[str, ...]
  segments: tuple[Segment, ...]

  def to_json(self) -> dict:
    return dict(prompts=list(self.prompts), segments=[
        {k: v for k, v in dataclasses.asdict(s).items() if v is not None}
        for s in self.segments])


def _fail(field: str, message: str):
  raise ValueError(f"{_FLAG} {field}: {message}" if field else f"{_FLAG} {message}")


def parse_text(spec: str) -> Timeline:
  """'0s: a red circle; 2s cut: a blue square' -> Timeline (equal prompts share an index)."""
  prompts, segments = [], []
  entries = [e for e in spec.split(";") if e.strip()]
  if not entries:
    _fail("", f"must be entries 'TIME s: PROMPT' joined with ';', got {spec!r}")
  for i, entry in enumerate(entries):
    m = _ENTRY.match(entry)
    if not m:
      _fail(f"entry {i + 1}", f"{entry.strip()!r} is not 'TIME s [keep|recache|cut]: PROMPT' "
            "(e.g. '2s: a blue circle moving right')")
    start, switch, prompt = float(m.group(1)), m.group(2), m.group(3).strip()
    if switch is not None and switch not in SWITCHES:
      _fail(f"entry {i + 1}", f"switch {switch!r} must be one of {list(SWITCHES)}")
    if not prompt:
      _fail(f"entry {i + 1}", "the prompt is empty")
    if prompt not in prompts:
      prompts.append(prompt)
    segments.append(dict(start=start, prompt=prompts.index(prompt), switch=switch))
  return parse_json(dict(prompts=prompts, segments=segments), text_form=True)


def parse_json(spec: dict, *, text_form: bool = False) -> Timeline:
  """Validates a timeline in the JSON schema above (see the module docstring)."""
  if not isinstance(spec, dict) or set(spec) - {"prompts", "segments"}:
    _fail("", "must be a JSON object with 'prompts' and 'segments'"
          + (f", got keys {sorted(spec)}" if isinstance(spec, dict) else ""))
  prompts = spec.get("prompts")
  if (not isinstance(prompts, list) or not prompts
      or not all(isinstance(p, str) and p.strip() for p in prompts)):
    _fail("prompts", "must be a non-empty list of non-empty strings")
  segments = spec.get("segments")
  if not isinstance(segments, list) or not segments:
    _fail("segments", "must be a non-empty list of {start, prompt[, end, switch]}")
  out = []
  for i, seg in enumerate(segments):
    field = f"entry {i + 1}" if text_form else f"segments[{i}]"
    if not isinstance(seg, dict) or not {"start", "prompt"} <= set(seg) or (
        set(seg) - {"start", "end", "prompt", "switch"}):
      _fail(field, f"must be {{start, prompt[, end, switch]}}, got {seg!r}")
    start, prompt = seg["start"], seg["prompt"]
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not (
        np.isfinite(start) and start >= 0):
      _fail(f"{field}.start", f"must be a time >= 0 in seconds, got {start!r}")
    if isinstance(prompt, bool) or not isinstance(prompt, int) or not 0 <= prompt < len(prompts):
      _fail(f"{field}.prompt", f"unknown prompt index {prompt!r}: allowed 0 to "
            f"{len(prompts) - 1} (the {len(prompts)} prompts)")
    switch = seg.get("switch")
    if switch is not None and switch not in SWITCHES:
      _fail(f"{field}.switch", f"must be one of {list(SWITCHES)}, got {switch!r}")
    if i == 0:
      if start != 0:
        _fail(f"{field}.start", f"the first segment must start at 0, got {start!r}")
    else:
      previous = out[-1].start
      end = segments[i - 1].get("end") if not text_form else None
      if start <= previous:
        _fail(f"{field}.start", f"{start:g} s overlaps the segment before it, which starts at "
              f"{previous:g} s (segments must be in time order)")
      if end is not None and end != start:
        what = "overlaps" if end > start else "leaves a gap before"
        _fail(f"segments[{i - 1}].end", f"{end!r} s {what} segments[{i}].start {start:g} s "
              "(each segment ends where the next starts)")
    out.append(Segment(float(start), prompt, switch))
  last_end = segments[-1].get("end") if not text_form else None
  if last_end is not None and (isinstance(last_end, bool) or not isinstance(
      last_end, (int, float)) or not last_end > out[-1].start):
    _fail(f"segments[{len(out) - 1}].end", f"must be after its start {out[-1].start:g} s, got "
          f"{last_end!r}")
  unused = sorted(set(range(len(prompts))) - {s.prompt for s in out})
  if unused:
    _fail("prompts", f"prompts {unused} are never used by a segment")
  return Timeline(tuple(p.strip() for p in prompts), tuple(out))


def load_timeline(spec) -> Timeline:
  """A timeline from its text form, a JSON file path (*.json), a dict, or a Timeline."""
  if isinstance(spec, Timeline):
    return spec
  if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).endswith(".json"):
    path = os.fspath(spec)
    if not os.path.isfile(path):
      _fail("", f"{path!r}: no such file (a JSON timeline, docs/control.md)")
    try:
      with open(path) as f:
        spec = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      _fail("", f"{path!r} is not valid JSON ({e})")
  if isinstance(spec, dict):
    return parse_json(spec)
  if isinstance(spec, str):
    return parse_text(spec)
  _fail("", f"must be text, a JSON file or a dict, got {type(spec).__name__}")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A timeline laid on a clip's chunks: prompt [C] (prompt index of each chunk), switch [C]
  ('' for chunk 0 and chunks that continue their segment, else the switch at its start),
  start_frame [C] (first pixel frame of each chunk)."""
  prompt: tuple[int, ...]
  switch: tuple[str, ...]
  start_frame: tuple[int, ...]

  def frame_prompts(self, bounds) -> np.ndarray:
    """Prompt index of every latent frame [T'] for the chunk bounds [(start, stop)]."""
    return np.concatenate([np.full(stop - start, p, np.int32)
                           for (start, stop), p in zip(bounds, self.prompt)])

  def shots(self, bounds) -> np.ndarray:
    """Shot index of every latent frame [T']: it grows by one at each cut."""
    shot = np.cumsum([s == "cut" for s in self.switch])
    return np.concatenate([np.full(stop - start, k, np.int32)
                           for (start, stop), k in zip(bounds, shot)])


def schedule(timeline: Timeline, bounds, *, fps: int, temporal_downsample: int,
             seconds: float, default_switch: str = "keep") -> Schedule:
  """Lays a timeline on latent chunks [(start, stop)]: chunk c plays the segment active at its
  first pixel frame. Raises when a segment starts after the clip ends or plays in no chunk
  (shorter than a chunk)."""
  if default_switch not in SWITCHES:
    raise ValueError(f"--switch {default_switch!r}: allowed {list(SWITCHES)}")
  td = temporal_downsample
  first_frames = [0 if start == 0 else (start - 1) * td + 1 for start, _ in bounds]
  times = np.asarray(first_frames, np.float64) / fps
  starts = np.array([s.start for s in timeline.segments])
  for i, start in enumerate(starts):
    if start >= seconds:
      _fail(f"segments[{i}].start", f"{start:g} s is not before the end of the {seconds:g} s "
            "clip")
  segment = np.searchsorted(starts, times + _EPS, side="right") - 1  # [C]
  never = sorted(set(range(len(starts))) - set(segment.tolist()))
  if never:
    i = never[0]
    chunk_seconds = (bounds[-1][1] - bounds[-1][0]) * td / fps
    _fail(f"segments[{i}]", f"starting at {starts[i]:g} s, it is replaced before any chunk "
          f"starts (chunks start every {chunk_seconds:g} s: make segments at least that long)")
  switch = [""] + [
      (timeline.segments[s].switch or default_switch) if s != prev else ""
      for prev, s in zip(segment[:-1], segment[1:])]
  return Schedule(prompt=tuple(int(timeline.segments[s].prompt) for s in segment),
                  switch=tuple(switch), start_frame=tuple(first_frames))
