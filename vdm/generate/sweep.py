"""Sweeps: one `vdm sample` request run over the values of one axis, and the grids that show the
clips at a glance.

  vdm sample --prompt "..." --sweep guidance=1,3,5 --out outputs/g.mp4
    -> outputs/g_guidance-1.mp4, g_guidance-3.mp4, g_guidance-5.mp4 (each with its .json),
       outputs/g_grid.png  (rows: the values; columns: frames evenly spaced in time),
       outputs/g_grid.gif  (the clips side by side, playing together), outputs/g_grid.json

The grids hold the clips' own pixels, separated by a white gutter (no resampling, no labels: the
order of the rows and cells is the order of the values, written in the grid's JSON). Everything
here is a pure function of its arguments; running the clips is `vdm.generate.render`'s.
"""
from __future__ import annotations

import math
import os

import numpy as np

# axis -> type of its values: the `vdm sample` flags (--seed, --guidance, ...) a sweep may vary.
SWEEP_AXES = dict(seed=int, guidance=float, steps=int, mode=str, chunk=int)
GUTTER = 2               # white pixels between cells
FILMSTRIP_FRAMES = 8     # columns of the PNG at most (frames evenly spaced over the clip)
GIF_COLUMNS = 4          # clips per row of the GIF at most


def parse_sweep(spec: str) -> tuple[str, list]:
  """'guidance=1,3,5' -> ('guidance', [1.0, 3.0, 5.0]). Raises ValueError naming --sweep, the
  allowed axes, and a value that is not of the axis' type or given twice."""
  axis, sep, listed = spec.partition("=") if isinstance(spec, str) else ("", "", "")
  axis = axis.strip()
  if not sep or axis not in SWEEP_AXES:
    raise ValueError(f"--sweep {spec!r} must be AXIS=V1,V2,... with AXIS one of "
                     f"{list(SWEEP_AXES)}, e.g. guidance=1,3,5")
  kind = SWEEP_AXES[axis]
  texts = [v.strip() for v in listed.split(",")]
  if not all(texts):
    raise ValueError(f"--sweep {spec!r}: give comma-separated values, none empty, e.g. "
                     f"{axis}=1,2,3")
  values = []
  for text in texts:
    try:
      value = kind(text)
    except ValueError:
      raise ValueError(f"--sweep {spec!r}: {text!r} is not a valid --{axis} value (expected "
                       f"{'an integer' if kind is int else 'a number'})") from None
    if value in values:
      raise ValueError(f"--sweep {spec!r}: {text!r} is given twice (each value is one clip)")
    values.append(value)
  return axis, values


def value_label(value) -> str:
  """A value as it appears in file names and labels: 3.0 -> '3', 0.5 -> '0.5', 'rolling'."""
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value)


def sweep_paths(out: str, axis: str, values) -> dict:
  """The files a sweep writes for --out OUT: one clip per value and the grids.

  Returns dict(clips=[OUT_AXIS-VALUE.ext, ...], png=OUT_grid.png, gif=OUT_grid.gif,
  json=OUT_grid.json)."""
  stem, suffix = os.path.splitext(out)
  return dict(clips=[f"{stem}_{axis}-{value_label(v)}{suffix}" for v in values],
              png=f"{stem}_grid.png", gif=f"{stem}_grid.gif", json=f"{stem}_grid.json")


def _same_size(clips) -> tuple[int, int]:
  sizes = {tuple(np.shape(c)[1:3]) for c in clips}
  if len(sizes) != 1 or not clips:
    raise ValueError(f"a grid needs clips of one frame size, got {sorted(sizes)}")
  return sizes.pop()


def _hold_last(clip: np.ndarray, frames: int) -> np.ndarray:
  """clip [T, H, W, 3] lengthened to `frames` by repeating its last frame."""
  return np.concatenate([clip, np.repeat(clip[-1:], frames - len(clip), axis=0)])


def tile(cells, columns: int, gutter: int = GUTTER) -> np.ndarray:
  """cells: images [H, W, 3] (or clips [T, H, W, 3]) of one size, laid out row by row in
  `columns` columns with `gutter` white pixels between them; returns [(T,) H', W', 3] uint8."""
  cells = [np.asarray(c, np.uint8) for c in cells]
  rows = math.ceil(len(cells) / columns)
  lead, (h, w) = cells[0].shape[:-3], cells[0].shape[-3:-1]
  out = np.full(lead + (rows * h + (rows - 1) * gutter, columns * w + (columns - 1) * gutter, 3),
                255, np.uint8)
  for i, cell in enumerate(cells):
    r, c = divmod(i, columns)
    y, x = r * (h + gutter), c * (w + gutter)
    out[..., y:y + h, x:x + w, :] = cell
  return out


def filmstrip_frames(length: int, columns: int = FILMSTRIP_FRAMES) -> list[int]:
  """Indices of at most `columns` frames evenly spaced over a clip of `length` frames, first and
  last included."""
  return sorted(set(np.round(np.linspace(0, length - 1, min(columns, length))).astype(int)
                    .tolist()))


def grid_image(clips, columns: int = FILMSTRIP_FRAMES, gutter: int = GUTTER) -> np.ndarray:
  """The PNG of a sweep: row i is clip i at the frames `filmstrip_frames` picks (over the longest
  clip; a shorter clip holds its last frame). clips: [T_i, H, W, 3]; returns [H', W', 3] uint8."""
  _same_size(clips)
  length = max(len(c) for c in clips)
  picks = filmstrip_frames(length, columns)
  cells = [_hold_last(np.asarray(c), length)[t] for c in clips for t in picks]
  return tile(cells, len(picks), gutter)


def grid_video(clips, columns: int = GIF_COLUMNS, gutter: int = GUTTER) -> np.ndarray:
  """The GIF of a sweep: the clips side by side (at most `columns` a row), playing together; a
  shorter clip holds its last frame. clips: [T_i, H, W, 3]; returns [T, H', W', 3] uint8."""
  _same_size(clips)
  length = max(len(c) for c in clips)
  return tile([_hold_last(np.asarray(c), length) for c in clips], min(columns, len(clips)), gutter)
