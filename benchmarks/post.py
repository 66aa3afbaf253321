"""Throughput of each post-processing stage (frames/s) at 256x144 and 1280x720.

  python -m benchmarks post [--repeats N] [--frames-small T] [--frames-large T]

Input is a uint8 clip of smooth random texture with a little motion (so stabilize and deflicker
do real work); frames/s = frames / best-of-N wall time, compile excluded (reported separately).
"""
from __future__ import annotations

import argparse
import statistics

import jax
import numpy as np

from benchmarks.common import timed, write
from vdm.post.lut import Lut, identity_table
from vdm.post.chain import apply_pipeline, parse_pipeline

SIZES = ((144, 256), (720, 1280))


def _stages() -> list[tuple[str, list]]:
  film = Lut(identity_table(33) ** 1.2, title="bench33")
  # learned: one forward alone, then the default (the 8-way self-ensemble, steadied).
  specs = ["upscale(2, bicubic)", "upscale(2, lanczos)",
           "upscale(2, learned, steady=0, ensemble=1)", "upscale(2, learned)", "deflicker(0.5)",
           "grade(exposure=0.3, temperature=0.2, contrast=1.1, saturation=1.2, gamma=1.1)",
           "grade(lut_interp=trilinear)", "grade(lut_interp=tetrahedral)", "sharpen(0.5)",
           "stabilize()"]
  out = []
  for spec in specs:
    stages = parse_pipeline(spec)
    if spec.startswith("grade(lut"):
      stages = [stages[0].__class__("grade", dict(stages[0].kwargs, lut=film), 0)]
      spec = spec.replace("lut_interp", "lut=33³, lut_interp")
    out.append((spec, stages))
  return out


def _clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  small = rng.random((h // 8 + 4, w // 8 + 4, 3)).astype(np.float32)
  big = np.asarray(jax.image.resize(small, ((h // 8 + 4) * 8, (w // 8 + 4) * 8, 3), "cubic"))
  shifts = rng.integers(0, 16, (t, 2))
  frames = np.stack([big[dy:dy + h, dx:dx + w] for dy, dx in shifts])
  gain = 1 + rng.uniform(-0.05, 0.05, (t, 1, 1, 1))
  return (np.clip(frames * gain, 0, 1) * 255).astype(np.uint8)


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks post")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--frames-small", type=int, default=32)
  parser.add_argument("--frames-large", type=int, default=8)
  parser.add_argument("--chunk", type=int, default=16)
  parser.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
  args = parser.parse_args(argv)
  rows = []
  sizes = ((16, 24), (24, 32)) if args.tiny else SIZES
  for (h, w), t in zip(sizes, (args.frames_small, args.frames_large)):
    frames = _clip(t, h, w)
    for spec, stages in _stages():
      first, times = timed(lambda: apply_pipeline(frames, stages, chunk=args.chunk), args.repeats)
      rows.append(dict(stage=spec, size=f"{w}x{h}", frames=t, first_call_s=first,
                       fps_best=t / min(times), fps_median=t / statistics.median(times)))
  write("post_tiny" if args.tiny else "post", rows, dict(repeats=args.repeats, chunk=args.chunk, backend=jax.default_backend()))
