"""Object trajectories: where each object's centre should be in every frame of a clip.

A trajectory is one path per object, in the order the prompt names the objects (the scenes
captions name the first object first; `vdm.data.scenes.render_scene` records `center[:, k]` for
object k). A path is a point (x, y) per frame in pixels of the output clip: x the column, y the
row, y growing downward (the convention of `vdm.data.scenes`).

JSON (`vdm sample --trajectory path.json`; docs/control.md):

    {"units": "pixels",                                  # or "fraction" (of width, height)
     "objects": [
       {"points": [[4, 16], [7, 16], ...]},              # one [x, y] per frame, or
       {"keypoints": [{"frame": 0, "x": 4, "y": 16},     # sparse, linearly interpolated;
                      {"frame": 8, "x": 28, "y": 16}]}   # held before the first, after the last
     ]}

Every point must lie inside the frame. `load_trajectory` validates and returns paths
[K, T, 2]; each error names the field and the allowed range.
"""
from __future__ import annotations

import json
import os

import numpy as np

UNITS = ("pixels", "fraction")
_FLAG = "--trajectory"


def _fail(field: str, message: str):
  raise ValueError(f"{_FLAG} {field}: {message}")


def _number(value, field: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
    _fail(field, f"must be a finite number, got {value!r}")
  return float(value)


def _only_keys(entry: dict, allowed: tuple[str, ...], field: str) -> None:
  unknown = sorted(set(entry) - set(allowed))
  if unknown:
    _fail(field, f"unknown keys {unknown}: allowed {list(allowed)}")


def interpolate_keypoints(frames_at: np.ndarray, xy: np.ndarray, frames: int) -> np.ndarray:
  """Linear interpolation of keypoints xy [n, 2] at increasing frame indices [n] over
  `frames` frames; held constant before the first and after the last. Returns float32 [T, 2]."""
  t = np.arange(frames, dtype=np.float64)
  return np.stack([np.interp(t, frames_at, xy[:, i]) for i in range(2)], -1).astype(np.float32)


def _object_path(entry, k: int, frames: int) -> np.ndarray:
  """One object's path [T, 2] (in the file's units) from its JSON entry."""
  field = f"objects[{k}]"
  if not isinstance(entry, dict):
    _fail(field, f"must be an object with 'points' or 'keypoints', got {type(entry).__name__}")
  _only_keys(entry, ("points", "keypoints"), field)
  if ("points" in entry) == ("keypoints" in entry):
    _fail(field, "give exactly one of 'points' (one [x, y] per frame) or 'keypoints'")
  if "points" in entry:
    points = entry["points"]
    if not isinstance(points, list) or len(points) != frames:
      got = len(points) if isinstance(points, list) else type(points).__name__
      _fail(f"{field}.points", f"needs one [x, y] per frame: {frames} points for this clip, "
            f"got {got}")
    out = np.empty((frames, 2), np.float32)
    for t, p in enumerate(points):
      if not isinstance(p, (list, tuple)) or len(p) != 2:
        _fail(f"{field}.points[{t}]", f"must be [x, y], got {p!r}")
      out[t] = [_number(v, f"{field}.points[{t}]") for v in p]
    return out
  keypoints = entry["keypoints"]
  if not isinstance(keypoints, list) or not keypoints:
    _fail(f"{field}.keypoints", "must be a non-empty list of {frame, x, y}")
  at, xy = [], []
  for i, kp in enumerate(keypoints):
    kf = f"{field}.keypoints[{i}]"
    if not isinstance(kp, dict) or set(kp) != {"frame", "x", "y"}:
      _fail(kf, f"must be {{\"frame\": int, \"x\": number, \"y\": number}}, got {kp!r}")
    frame = kp["frame"]
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < frames:
      _fail(f"{kf}.frame", f"must be an integer in [0, {frames - 1}] (the clip has {frames} "
            f"frames), got {frame!r}")
    if at and frame <= at[-1]:
      _fail(f"{kf}.frame", f"keypoint frames must increase: {frame} after {at[-1]}")
    at.append(frame)
    xy.append([_number(kp["x"], f"{kf}.x"), _number(kp["y"], f"{kf}.y")])
  return interpolate_keypoints(np.asarray(at, np.float64), np.asarray(xy, np.float64), frames)


def parse_trajectory(spec: dict, *, frames: int, height: int, width: int,
                     max_objects: int) -> np.ndarray:
  """Validates a trajectory in the JSON schema above; returns pixel paths float32 [K, T, 2]."""
  if not isinstance(spec, dict):
    _fail("", f"must be a JSON object with 'objects', got {type(spec).__name__}")
  _only_keys(spec, ("units", "objects"), "(top level)")
  units = spec.get("units", "pixels")
  if units not in UNITS:
    _fail("units", f"must be one of {list(UNITS)}, got {units!r}")
  objects = spec.get("objects")
  if not isinstance(objects, list) or not 1 <= len(objects) <= max_objects:
    got = len(objects) if isinstance(objects, list) else repr(objects)
    _fail("objects", f"must be a list of 1 to {max_objects} object paths (the model's "
          f"control.objects), got {got}")
  paths = np.stack([_object_path(entry, k, frames) for k, entry in enumerate(objects)])
  if units == "fraction":
    paths = paths * np.array([width - 1, height - 1], np.float32)
  check_in_frame(paths, height, width)
  return paths.astype(np.float32)


def check_in_frame(paths: np.ndarray, height: int, width: int) -> None:
  """Raises naming the first point of paths [K, T, 2] outside [0, W-1] x [0, H-1]."""
  limits = np.array([width - 1, height - 1], np.float64)
  outside = ~((paths >= 0) & (paths <= limits)).all(-1)
  if outside.any():
    k, t = (int(i) for i in np.argwhere(outside)[0])
    x, y = paths[k, t]
    _fail(f"objects[{k}] frame {t}", f"point ({x:.3g}, {y:.3g}) is outside the "
          f"{width}x{height} frame: x must be in [0, {width - 1}], y in [0, {height - 1}]")


def load_trajectory(spec, *, frames: int, height: int, width: int,
                    max_objects: int) -> np.ndarray:
  """A trajectory from a JSON file path, a dict in the schema, or an array [K, T, 2] / [T, 2]
  of pixel points; validated against the clip. Returns float32 [K, T, 2]."""
  if isinstance(spec, (str, os.PathLike)):
    path = os.fspath(spec)
    if not os.path.isfile(path):
      raise ValueError(f"{_FLAG} {path!r}: no such file (a JSON trajectory, docs/control.md)")
    try:
      with open(path) as f:
        spec = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{_FLAG} {path!r} is not valid JSON ({e})") from None
  if isinstance(spec, dict):
    return parse_trajectory(spec, frames=frames, height=height, width=width,
                            max_objects=max_objects)
  paths = np.asarray(spec, np.float32)
  if paths.ndim == 2:
    paths = paths[None]
  if paths.ndim != 3 or paths.shape[1:] != (frames, 2) or not 1 <= len(paths) <= max_objects:
    _fail("", f"an array must be [K, T, 2] with T = {frames} frames and K in [1, {max_objects}], "
          f"got shape {paths.shape}")
  if not np.isfinite(paths).all():
    _fail("", "points must be finite")
  check_in_frame(paths, height, width)
  return paths


def to_json(paths: np.ndarray) -> dict:
  """Paths [K, T, 2] as the JSON schema's dense form (what a sidecar records)."""
  return dict(units="pixels", objects=[dict(points=np.round(p, 4).tolist()) for p in paths])
