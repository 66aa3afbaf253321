"""Writes docs/spine_samples.png: the shipped model on four prompts (seed 0), one row per prompt.

  .venv/bin/python experiments/make_spine_grid.py [--checkpoint checkpoints/spine] [--out PNG]
"""
import argparse

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vdm  # noqa: E402

PROMPTS = ("a red circle moving right on a blue background",
           "a red circle moving left on a blue background",
           "a green square moving up on a magenta background",
           "a green square moving down on a magenta background")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--checkpoint", default="checkpoints/spine")
  parser.add_argument("--out", default="docs/spine_samples.png")
  args = parser.parse_args()
  pipe = vdm.Pipeline.load(args.checkpoint)
  clips = [pipe(prompt, seed=0) for prompt in PROMPTS]
  fig, axes = plt.subplots(len(clips), clips[0].shape[0], figsize=(9, 4.8))
  for row, (prompt, frames) in enumerate(zip(PROMPTS, clips)):
    for t, frame in enumerate(frames):
      axes[row, t].imshow(frame)
      axes[row, t].axis("off")
    axes[row, 0].set_title(prompt, fontsize=7, loc="left")
  plt.subplots_adjust(wspace=0.05, hspace=0.35)
  plt.savefig(args.out, dpi=80, bbox_inches="tight")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
