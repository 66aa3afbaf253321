"""Drift curves: any per-frame metric as a function of frame index over a batch of clips, and
a matplotlib plot of them (e.g. autoregressive rollouts beyond the training length)."""
from __future__ import annotations

import os
from typing import Callable, Iterable, Mapping

import numpy as np


def curve(values) -> dict:
  """Per-frame statistics of values float [B, T] (nan = not measured for that clip/frame).

  Returns dict(mean, std, count) each float64/int [T]: nan-aware mean and population std over
  clips, and how many clips were measured at each frame.
  """
  v = np.asarray(values, np.float64)
  if v.ndim != 2:
    raise ValueError(f"values must be [B, T], got shape {v.shape}")
  count = np.isfinite(v).sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.nansum(v, axis=0) / count
    std = np.sqrt(np.nansum((v - mean) ** 2, axis=0) / count)
  return dict(mean=mean, std=std, count=count)


def drift_curve(metric: Callable[..., np.ndarray], clips: Iterable, **kwargs) -> dict:
  """Applies a per-frame metric to each clip and summarises it per frame index.

  Args:
    metric: fn(clip, **kwargs) -> float [T_i] (e.g. `lambda c: consistency.flicker(c['video'],
      c['static'])['per_frame']`); clips may differ in length.
    clips: iterable of whatever `metric` takes.
  Returns:
    `curve` of the stacked values, shorter clips padded with nan: dict(mean, std, count) [T_max].
  """
  rows = [np.asarray(metric(c, **kwargs), np.float64).reshape(-1) for c in clips]
  if not rows:
    raise ValueError("drift_curve needs at least one clip")
  length = max(len(r) for r in rows)
  padded = np.full((len(rows), length), np.nan)
  for i, r in enumerate(rows):
    padded[i, :len(r)] = r
  return curve(padded)


def plot_drift_curves(curves: Mapping[str, dict], path: str, *, ylabel: str = "metric",
                      title: str = "", train_length: int | None = None,
                      x_offset: int = 0) -> str:
  """Writes a PNG with one line per curve (mean, shaded +-1 std) against frame index.

  Args:
    curves: name -> `curve` dict (e.g. one per generation mode).
    path: output .png path (folders are created).
    train_length: draws a dashed vertical line where clips exceed the training length.
    x_offset: index of the first value (1 for metrics of transitions t -> t+1).
  Returns:
    path.
  """
  import matplotlib
  matplotlib.use("Agg")  # No display on servers; must precede pyplot.
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
  for name, c in curves.items():
    mean, std = np.asarray(c["mean"]), np.asarray(c["std"])
    x = np.arange(len(mean)) + x_offset
    line, = ax.plot(x, mean, label=name)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
  if train_length is not None:
    ax.axvline(train_length - 0.5, color="grey", linestyle="--", linewidth=1,
               label="training length")
  ax.set_xlabel("frame")
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.legend(fontsize="small")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
