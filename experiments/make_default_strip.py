"""Writes docs/default_samples.png: the default model on one held-out prompt in each mode, the
autoregressive and rolling rows at 4x the training length, every 2nd frame of each clip.

  .venv/bin/python experiments/make_default_strip.py [--checkpoint workdirs/default/model] [--out PNG]
"""
import argparse

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import vdm  # noqa: E402

# A held-out composition (vdm.data.simple.is_held_out): never seen in training.
PROMPT = "a yellow triangle moving left on a red background"
ROWS = (("parallel, 1x (9 frames)", dict(mode="parallel")),
        ("autoregressive, 4x (33 frames)", dict(mode="autoregressive", seconds=33 / 8)),
        ("rolling, 4x (33 frames)", dict(mode="rolling", seconds=33 / 8)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--checkpoint", default="workdirs/default/model")  # configs/default.py
  parser.add_argument("--prompt", default=PROMPT)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="docs/default_samples.png")
  args = parser.parse_args()
  pipe = vdm.Pipeline.load(args.checkpoint)
  clips = [pipe(args.prompt, seed=args.seed, **options)[::2] for _, options in ROWS]
  columns = max(len(c) for c in clips)
  fig, axes = plt.subplots(len(clips), columns, figsize=(columns * 0.55, len(clips) * 0.9))
  for row, ((title, _), frames) in enumerate(zip(ROWS, clips)):
    for t in range(columns):
      axes[row, t].axis("off")
      if t < len(frames):
        axes[row, t].imshow(np.asarray(frames[t]))
    axes[row, 0].set_title(f"{title}: every 2nd frame", fontsize=7, loc="left")
  fig.suptitle(f'"{args.prompt}" (held out), seed {args.seed}', fontsize=8)
  plt.subplots_adjust(wspace=0.05, hspace=0.45)
  plt.savefig(args.out, dpi=90, bbox_inches="tight")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
