"""Writes docs/data_grid.png: sample frames of the synthetic benchmark with their captions.

  python experiments/make_data_grid.py [--out docs/data_grid.png] [--seed 0]

Rows: scenes clips (64x64, 16 frames; frames 0, 5, 10, 15), one 16:9 clip and one Moving MNIST
clip; under each row its short caption (scenes also its long caption).
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vdm.data import moving_mnist  # noqa: E402
from vdm.data import scene_examples  # noqa: E402

ROW_WIDTH = 4 * 128 + 3 * 4
WRAP = 84


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):
    return ImageFont.load_default()


def _row(video: np.ndarray, texts: list[str], picks, height: int = 128) -> Image.Image:
  frames = [Image.fromarray(video[t]) for t in picks]
  w = int(round(video.shape[2] * height / video.shape[1]))
  strip = Image.new("RGB", (ROW_WIDTH, height), "white")
  x = 0
  for frame in frames:
    strip.paste(frame.resize((w, height), Image.NEAREST), (x, 0))
    x += w + 4
  lines = [l for t in texts for l in textwrap.wrap(t, WRAP)]
  font = _font(13)
  out = Image.new("RGB", (ROW_WIDTH, height + 8 + 17 * len(lines) + 12), "white")
  out.paste(strip, (0, 0))
  draw = ImageDraw.Draw(out)
  for i, line in enumerate(lines):
    draw.text((2, height + 6 + 17 * i), line, fill=(0, 0, 0), font=font)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="docs/data_grid.png")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rows", type=int, default=5)
  args = parser.parse_args(argv)
  rows = []
  for i in range(args.rows):
    split = "test" if i == args.rows - 1 else "train"
    e = scene_examples.make_example(args.seed, split, i, 64, 64, 16)
    rows.append(_row(e["video"], [f"[{split}] {e['caption']}", e["caption_long"]],
                     (0, 5, 10, 15)))
  e = scene_examples.make_example(args.seed, "train", 100, 144, 256, 32)
  rows.append(_row(e["video"], [f"[16:9] {e['caption']}"], (0, 31), height=144))
  m = moving_mnist.make_example(args.seed, "train", 0)
  rows.append(_row(m["video"], [f"[moving mnist] {m['caption']}"], (0, 6, 12, 19)))
  grid = Image.new("RGB", (ROW_WIDTH + 16, sum(r.height for r in rows) + 8 * len(rows) + 8),
                   "white")
  y = 8
  for r in rows:
    grid.paste(r, (8, y))
    y += r.height + 8
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  grid.save(args.out, optimize=True)
  print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
  main()
