"""`vdm eval rollout`: per-frame quality of a model's clips at and beyond the training length.

Each clip is scored against its prompt (`vdm.eval.metrics.rollout`): colour error and object
presence per frame (their drift with frame index is what long autoregressive rollouts are known
for), background flicker, and, over the first training-length frames, motion direction and the
fraction of stalled steps. The parallel-vs-autoregressive experiment
(`experiments/parallel_vs_ar.py`) uses the same functions.
"""
from __future__ import annotations

import os
import time

import numpy as np
from tqdm.auto import tqdm

from vdm.data import simple
from vdm.eval.adherence import motion_direction, unwrap_track
from vdm.eval.metrics.rollout import frame_scores, stall_fraction

SUMMARY_FIELDS = ("object_ok", "direction_ok", "stall", "flicker", "colour_error",
                  "colour_error_last", "seconds_per_frame")


def score_clip(video: np.ndarray, example: dict, *, train_frames: int,
               wrap: bool = False) -> dict:
  """Per-frame scores [T] of a generated clip for a synthetic example's prompt, plus direction
  and stall judged on its first `train_frames` frames (where the caption's motion is defined;
  wrap: a wrapped clip, its track unwrapped first)."""
  s = frame_scores(video, int(example["color"]), int(example["background"]), wrap=wrap)
  first = s["centers"][:train_frames]
  if wrap:
    first = unwrap_track(first, (video.shape[2], video.shape[1]))
  speed = float(np.linalg.norm(example["center"][1] - example["center"][0]))
  return dict(colour_error=s["colour_error"], object_ok=s["object_ok"], flicker=s["flicker"],
              direction_ok=float(motion_direction(first) == int(example["direction"])),
              stall=stall_fraction(first, int(example["direction"]), speed=speed))


def clip_summary(row: dict) -> dict:
  """Scalars of one scored clip (row from `score_clip` plus 'seconds')."""
  frames = len(row["colour_error"])
  quarter = max(1, frames // 4)
  return dict(object_ok=float(np.mean(row["object_ok"])), direction_ok=row["direction_ok"],
              stall=row["stall"], flicker=float(np.nanmean(row["flicker"]))
              if np.isfinite(row["flicker"]).any() else float("nan"),
              colour_error=float(np.mean(row["colour_error"])),
              colour_error_last=float(np.mean(row["colour_error"][-quarter:])),
              seconds_per_frame=row["seconds"] / frames)


def summarize_rows(rows: list[dict]) -> dict:
  """field -> dict(mean, std, per_seed): the mean over a seed's clips, then mean and std over
  seeds (the uncertainty of a sampling seed). Rows need 'seed' and `clip_summary`'s inputs."""
  clips = [(r["seed"], clip_summary(r)) for r in rows]
  seeds = sorted({s for s, _ in clips})
  out = {}
  for field in SUMMARY_FIELDS:
    per_seed = [float(np.mean([c[field] for s, c in clips if s == seed])) for seed in seeds]
    out[field] = dict(mean=float(np.mean(per_seed)), std=float(np.std(per_seed)),
                      per_seed=per_seed)
  return out


def sample_and_score(pipe, examples, *, frames: int, seeds, train_frames: int, fps: int,
                     resolution: int, keep_first_video: bool = True, progress=None,
                     **options) -> list[dict]:
  """Generates each example's caption with each seed (`options` go to the pipeline: mode, chunk,
  context_noise, steps, ...) and scores it; the first call is repeated untimed to compile."""
  options = dict(options, seconds=frames / fps, fps=fps, resolution=resolution)
  pipe(examples[0]["caption"], seed=0, **options)  # compile outside the timings
  rows = []
  for seed in seeds:
    for i, example in enumerate(examples):
      t0 = time.perf_counter()
      video = pipe(example["caption"], seed=seed * 10_000 + i, **options)
      row = dict(score_clip(video, example, train_frames=train_frames,
                            wrap=pipe.config.data.wrap), seed=seed, prompt=i,
                 seconds=time.perf_counter() - t0)
      row["video"] = video if keep_first_video and not rows else None
      rows.append(row)
      if progress is not None:
        progress.update()
  return rows


ROLLOUT_METHODS = (("parallel", 1, 0.0), ("autoregressive", 1, 0.0),
                   ("autoregressive", 1, 0.1))


def summary_entry(method: str, length: int, train_frames: int,
                  rows: list[dict]) -> tuple[str, dict]:
  """('method @ Lx', dict(method, length, frames, field -> dict(mean, std, per_seed))) for one
  method's rows at `length` x the training length."""
  frames = 1 + (train_frames - 1) * length
  return f"{method} @ {length}x", dict(method=method, length=length, frames=frames,
                                       **summarize_rows(rows))


def run_rollout(checkpoint: str, *, num: int = 8, seeds=(0, 1, 2), lengths=(1, 2, 4),
                steps: int | None = None, out: str = "") -> dict:
  """Scores the model's clips in parallel and autoregressive mode at several lengths."""
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  d = pipe.config.data
  examples = [e for _, e in simple.generate_examples(d.seed, "test", num, d.height, d.width,
                                                     d.frames, wrap=d.wrap)]
  pipe.config.sample.max_frames = max(pipe.config.sample.max_frames,
                                      1 + (d.frames - 1) * max(lengths))
  summary = {}
  total = len(ROLLOUT_METHODS) * len(lengths) * len(seeds) * num
  with tqdm(total=total, desc="rollout") as bar:
    for mode, chunk, noise in ROLLOUT_METHODS:
      for length in lengths:
        frames = 1 + (d.frames - 1) * length
        rows = sample_and_score(pipe, examples, frames=frames, seeds=seeds,
                                train_frames=d.frames, fps=d.fps,
                                resolution=min(d.height, d.width), keep_first_video=False,
                                progress=bar, mode=mode, chunk=chunk, context_noise=noise,
                                steps=steps)
        name = mode if mode == "parallel" else f"{mode} k={chunk} ctx noise {noise}"
        key, entry = summary_entry(name, length, d.frames, rows)
        summary[key] = entry
  report = dict(summary=summary, checkpoint=os.path.abspath(checkpoint), seeds=list(seeds),
                num=num, git_commit=git_commit())
  from vdm.eval.run import write_report
  return write_report(out, report, markdown_table(summary))


def markdown_table(summary: dict) -> str:
  """One row per `method @ length` entry: mean ± std over seeds of each summary field."""
  head = ("| method | length | object ok | direction ok (first clip) | stalled steps | flicker "
          "| colour error | colour error, last quarter | ms / frame |")
  lines = [head, "|" + "---|" * 9]
  for e in summary.values():
    def cell(field, scale=1.0, fmt="{:.3f}"):
      return f"{fmt.format(e[field]['mean'] * scale)} ± {fmt.format(e[field]['std'] * scale)}"
    lines.append(
        f"| {e['method']} | {e['length']}x ({e['frames']} fr) | {cell('object_ok')} | "
        f"{cell('direction_ok')} | {cell('stall')} | {cell('flicker', fmt='{:.4f}')} | "
        f"{cell('colour_error', fmt='{:.4f}')} | {cell('colour_error_last', fmt='{:.4f}')} | "
        f"{cell('seconds_per_frame', 1000, '{:.1f}')} |")
  return "\n".join(lines) + "\n"
