"""`vdm eval coherence`: does a long clip still follow its prompt in its last quarter?

Samples held-out prompts at several multiples of the training length in each mode that can
make clips that long (parallel up to `sample.max_frames`; the streaming modes, autoregressive
and rolling, to any length), and scores each clip's last quarter with
`vdm.eval.metrics.coherence`: motion kept (direction and speed of the track against the
caption) and identity kept (colour and size). The model's data must be the spine's world
(`data.kind='simple'`); wrapped clips (`data.wrap`) are what make every length checkable.
"""
from __future__ import annotations

import os
import time

import numpy as np
from tqdm.auto import tqdm

from vdm.data import simple
from vdm.eval.metrics.coherence import coherence, summarize
from vdm.generate.streaming import streams

MODES = ("parallel", "autoregressive", "rolling")
FIELDS = ("coherent", "motion_ok", "colour_ok", "size_ok")


def run_coherence(checkpoint: str, *, num: int = 16, seed: int = 0, lengths=(1, 4, 8, 16),
                  steps: int | None = None, modes=MODES, out: str = "") -> dict:
  """Scores `num` held-out prompts per (mode, length); writes JSON and a markdown table next to
  `out`; returns the report. Prompt i uses seed `seed + i` in every cell."""
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  if not lengths or any(not isinstance(k, int) or k < 1 for k in lengths):
    raise ValueError(f"--lengths {lengths!r}: positive integers, e.g. 1,4,8,16")
  pipe = Pipeline.load(checkpoint)
  d, s = pipe.config.data, pipe.config.sample
  if d.kind != "simple":
    raise ValueError(f"--checkpoint {checkpoint!r}: the coherence suite scores models of the "
                     f"simple data kind (this one: {d.kind!r})")
  cells = []
  for mode in modes:
    for length in lengths:
      frames = 1 + (d.frames - 1) * length
      limit = s.max_stream_frames if streams(mode, sampler=s.sampler) else s.max_frames
      if frames <= limit:
        cells.append((mode, length, frames))
  summary, rows = {}, []
  with tqdm(total=len(cells) * num, desc="coherence") as bar:
    for mode, length, frames in cells:
      cell = []
      for i in range(num):
        example = simple.long_example(d.seed, i, d.height, d.width, d.frames, length,
                                      wrap=d.wrap)
        t0 = time.perf_counter()
        video = pipe(example["caption"], seed=seed + i, steps=steps, mode=mode,
                     seconds=frames / d.fps, fps=d.fps, resolution=min(d.height, d.width))
        row = coherence(video, color=int(example["color"]),
                        direction=int(example["direction"]),
                        speed_range=simple.speed_range(d.height, d.width, d.frames,
                                                       int(example["direction"])),
                        wrap=d.wrap)
        cell.append(dict(row, mode=mode, length=length, frames=frames, prompt=i,
                         caption=example["caption"], seconds=time.perf_counter() - t0))
        bar.update()
      summary[f"{mode} @ {length}x"] = dict(mode=mode, length=length, frames=frames,
                                            **summarize(cell))
      rows += cell
  report = dict(summary=summary, rows=rows, checkpoint=os.path.abspath(checkpoint), seed=seed,
                num=num, steps=steps or s.steps, git_commit=git_commit())
  from vdm.eval.run import write_report
  return write_report(out, report, markdown_table(summary))


def markdown_table(summary: dict) -> str:
  """One row per (mode, length): the fraction of prompts passing each check."""
  lines = ["| mode | length | coherent (all checks) | motion kept | colour kept | size kept | "
           "prompts |", "|---|---|---|---|---|---|---|"]
  for e in summary.values():
    lines.append(f"| {e['mode']} | {e['length']}x ({e['frames']} fr) | "
                 + " | ".join(f"{e[k]:.0%}" for k in FIELDS) + f" | {e['n']} |")
  return "\n".join(lines) + "\n"
