"""Frame strips of a control model (configs/control.py) on held-out clips, with the requested path
drawn on every frame: text alone vs with the trajectory, and a colour-switch timeline under each
switch policy (experiments/control/README.md).

  .venv/bin/python experiments/make_control_strips.py --checkpoint workdirs/control/model \\
      --out experiments/results/control/strips.png
"""
from __future__ import annotations

import argparse
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vdm  # noqa: E402
from vdm.control.timeline import SWITCHES  # noqa: E402
from vdm.eval.control import held_out_clips, recolored_caption  # noqa: E402


def main(argv=None) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--checkpoint", default="workdirs/control/model")
  parser.add_argument("--clips", type=int, default=3, help="held-out clips with a path")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--out", default="experiments/results/control/strips.png")
  args = parser.parse_args(argv)
  pipe = vdm.Pipeline.load(args.checkpoint)
  d = pipe.config.data
  size = dict(seconds=d.frames / d.fps, fps=d.fps, resolution=min(d.height, d.width),
              steps=args.steps)
  rows = []  # (title, frames, path or None)
  for i, example in enumerate(held_out_clips(d, args.clips, skip_digits=True)):
    path = example["center"][:, 0]
    rows.append((f"text only: {example['caption']}", pipe(example["caption"], seed=i, **size),
                 path))
    rows.append(("with the path (red line: requested, dot: this frame)",
                 pipe(example["caption"], seed=i, trajectory=path[None], **size), path))
  example = held_out_clips(d, 1, skip_digits=False)[0]
  second, _ = recolored_caption(example)
  switch = (d.frames - 1) / d.fps
  timeline = f"0s: {example['caption']}; {switch:g}s: {second}"
  for policy in SWITCHES:
    frames = pipe(prompts=timeline, switch=policy, mode="autoregressive", chunk=1,
                  seconds=(2 * d.frames - 1) / d.fps, fps=d.fps,
                  resolution=min(d.height, d.width), seed=0, steps=args.steps)
    rows.append((f"timeline, {policy} at {switch:g} s: ... -> {second[:60]}", frames, None))
  columns = max(len(r[1]) for r in rows)
  fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 0.9, len(rows) * 1.05),
                           squeeze=False)
  for r, (title, frames, path) in enumerate(rows):
    for t in range(columns):
      ax = axes[r, t]
      ax.axis("off")
      if t >= len(frames):
        continue
      ax.imshow(frames[t])
      if path is not None:
        ax.plot(path[:, 0], path[:, 1], "r-", lw=0.8)
        ax.plot(path[t, 0], path[t, 1], "wo", ms=2.5, mec="r", mew=0.6)
    axes[r, 0].set_title(title, fontsize=6, loc="left")
  plt.subplots_adjust(wspace=0.04, hspace=0.45)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  plt.savefig(args.out, dpi=110, bbox_inches="tight")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
