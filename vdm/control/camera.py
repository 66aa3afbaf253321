"""Camera paths: the view's scale and offset in every frame of a clip.

A camera path is float [T, 3] of (s, tx, ty) per frame, the convention `vdm.data.scenes` records
for every clip: a point of the world (the scene as frame 0 sees it) appears at image position
s * world + (tx, ty). Frame 0 of a path built from moves is the identity.

Moves (`vdm sample --camera "pan(2,0)+zoom(1.3)"`), joined with '+':

    static()            no motion
    pan(dx, dy)         the view moves dx px right and dy px down per frame (the content slides
                        the other way: the data's 'pan-left' is pan(-a, 0))
    zoom(f)             scale f at the last frame, geometric in between, about the frame centre
                        (f > 1 zooms in, as the data's 'zoom-in')
    shake(a[, seed])    hand-held jitter: an offset drawn uniformly in [-a, a] px per axis, per
                        frame after the first (seeded)

JSON (`--camera path.json`): {"moves": "pan(2,0)"} or {"path": [[s, tx, ty], ...]} with one
entry per frame. Each error names the field and the allowed range.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

MOVES = {"static": (0, 0), "pan": (2, 2), "zoom": (1, 1), "shake": (1, 2)}  # name: (min, max) args
SCALE_RANGE = (0.25, 4.0)  # a frame's scale s, and zoom(f)'s f
MAX_SHAKE = 8.0  # px
_FLAG = "--camera"
_MOVE = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$")


def _fail(message: str):
  raise ValueError(f"{_FLAG} {message}")


def _args(name: str, raw: str, spec: str) -> list[float]:
  parts = [p.strip() for p in raw.split(",")] if raw.strip() else []
  low, high = MOVES[name]
  if not low <= len(parts) <= high:
    want = str(low) if low == high else f"{low} to {high}"
    _fail(f"{spec!r}: {name}() takes {want} numbers, got {len(parts)}")
  try:
    values = [float(p) for p in parts]
  except ValueError:
    _fail(f"{spec!r}: {name}() arguments must be numbers, got {raw!r}")
  if not all(np.isfinite(values)):
    _fail(f"{spec!r}: {name}() arguments must be finite, got {raw!r}")
  return values


def parse_moves(spec: str) -> list[tuple[str, list[float]]]:
  """'pan(2,0)+zoom(1.3)' -> [('pan', [2.0, 0.0]), ('zoom', [1.3])]; raises naming the move."""
  if not isinstance(spec, str) or not spec.strip():
    _fail(f"must be moves like 'pan(2,0)+zoom(1.3)' or a JSON file, got {spec!r}")
  moves = []
  for part in spec.split("+"):
    m = _MOVE.match(part)
    if not m or m.group(1) not in MOVES:
      _fail(f"{spec!r}: {part.strip()!r} is not a move: allowed "
            f"{[f'{n}(...)' for n in MOVES]} joined with '+'")
    name = m.group(1)
    values = _args(name, m.group(2), spec)
    if name == "zoom" and not SCALE_RANGE[0] <= values[0] <= SCALE_RANGE[1]:
      _fail(f"{spec!r}: zoom(f) needs f in {list(SCALE_RANGE)}, got {values[0]:g}")
    if name == "shake" and not 0 <= values[0] <= MAX_SHAKE:
      _fail(f"{spec!r}: shake(a) needs a in [0, {MAX_SHAKE:g}] px, got {values[0]:g}")
    moves.append((name, values))
  return moves


def path_from_moves(moves, *, frames: int, height: int, width: int) -> np.ndarray:
  """Camera path float64 [T, 3] (s, tx, ty) of parsed moves (see the module docstring)."""
  t = np.arange(frames, dtype=np.float64)
  frac = t / max(frames - 1, 1)
  s = np.ones(frames)
  shift = np.zeros((frames, 2))
  for name, values in moves:
    if name == "pan":
      shift -= t[:, None] * np.asarray(values)  # the view moves right: content slides left
    elif name == "zoom":
      s = s * values[0] ** frac
    elif name == "shake":
      rng = np.random.default_rng(int(values[1]) if len(values) > 1 else 0)
      jitter = rng.uniform(-values[0], values[0], (frames, 2))
      jitter[0] = 0.0
      shift += jitter
  centre = np.array([(width - 1) / 2, (height - 1) / 2])
  offset = centre * (1.0 - s)[:, None] + shift  # zoom about the centre, then the shifts
  return np.concatenate([s[:, None], offset], axis=-1)


def check_path(path: np.ndarray, frames: int, height: int, width: int,
               field: str = "path") -> np.ndarray:
  """Validates a camera path [T, 3]; returns it as float32."""
  path = np.asarray(path, np.float64)
  where = (lambda i: f"path[{i}]") if field == "path" else (lambda i: f"{field}: frame {i}")
  if path.shape != (frames, 3):
    _fail(f"{field}: needs one [s, tx, ty] per frame: shape ({frames}, 3) for this clip, got "
          f"{path.shape}")
  if not np.isfinite(path).all():
    _fail(f"{field}: values must be finite")
  bad = np.nonzero((path[:, 0] < SCALE_RANGE[0]) | (path[:, 0] > SCALE_RANGE[1]))[0]
  if len(bad):
    _fail(f"{where(bad[0])}: scale s={path[bad[0], 0]:g} must be in {list(SCALE_RANGE)}")
  # A view that has left the frame-0 scene entirely shows nothing the model was given.
  limit = 2.0 * max(height, width)
  far = np.nonzero(np.abs(path[:, 1:]).max(-1) > limit)[0]
  if len(far):
    _fail(f"{where(far[0])}: offset ({path[far[0], 1]:g}, {path[far[0], 2]:g}) must be within "
          f"+-{limit:g} px (twice the frame's long side)")
  return path.astype(np.float32)


def load_camera(spec, *, frames: int, height: int, width: int) -> np.ndarray:
  """A camera path from moves ('pan(2,0)'), a JSON file path, a dict ({"moves": ...} or
  {"path": [[s, tx, ty], ...]}) or an array [T, 3]; validated. Returns float32 [T, 3]."""
  if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).endswith(".json"):
    path = os.fspath(spec)
    if not os.path.isfile(path):
      _fail(f"{path!r}: no such file (a JSON camera path, docs/control.md)")
    try:
      with open(path) as f:
        spec = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      _fail(f"{path!r} is not valid JSON ({e})")
    if not isinstance(spec, dict):
      _fail(f"{path!r}: must hold an object with 'moves' or 'path'")
  if isinstance(spec, dict):
    unknown = sorted(set(spec) - {"moves", "path"})
    if unknown or len(spec) != 1:
      _fail(f"needs exactly one of 'moves' or 'path', got keys {sorted(spec)}")
    if "moves" in spec:
      spec = spec["moves"]
    else:
      try:
        values = np.asarray(spec["path"], np.float64)
      except (TypeError, ValueError):
        _fail("path: must be a list of [s, tx, ty] numbers, one per frame")
      return check_path(values, frames, height, width)
  if isinstance(spec, str):
    path = path_from_moves(parse_moves(spec), frames=frames, height=height, width=width)
    return check_path(path, frames, height, width, field=repr(spec))
  try:
    values = np.asarray(spec, np.float64)
  except (TypeError, ValueError):
    _fail(f"must be moves, a JSON file or an array [T, 3], got {type(spec).__name__}")
  return check_path(values, frames, height, width)


def step_transforms(path: np.ndarray) -> np.ndarray:
  """The motion from each frame to the next, float64 [T-1, 3] (r, ox, oy): a pixel p of frame
  t appears at r * p + (ox, oy) in frame t + 1 (r = s[t+1] / s[t])."""
  path = np.asarray(path, np.float64)
  r = path[1:, 0] / path[:-1, 0]
  return np.concatenate([r[:, None], path[1:, 1:] - r[:, None] * path[:-1, 1:]], axis=-1)
