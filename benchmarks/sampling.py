"""Sampling latency of the shipped model: compile, per clip, per sampler step.

  python -m benchmarks sampling [--checkpoint DIR] [--repeats N]
"""
from __future__ import annotations

import argparse
import statistics

import jax

from benchmarks.common import timed, write
from vdm.cli import DEFAULT_CHECKPOINT


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks sampling")
  parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  import vdm
  pipe = vdm.Pipeline.load(args.checkpoint)
  rows = []
  for steps in (10, 25, 50):
    request = pipe.resolve("a red circle moving right on a blue background", steps=steps)
    first, times = timed(lambda: pipe.generate(request), args.repeats)
    rows.append(dict(steps=steps, frames=request.frames,
                     size=f"{request.height}x{request.width}", first_call_s=first,
                     clip_min_s=min(times), clip_median_s=statistics.median(times),
                     per_step_ms=1000 * min(times) / steps))
  write("sampling", rows, dict(checkpoint=args.checkpoint, repeats=args.repeats,
                               backend=jax.default_backend()))
