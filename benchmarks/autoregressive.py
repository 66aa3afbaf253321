"""Autoregressive generation: seconds per chunk against clip length, with and without KV cache.

  python -m benchmarks autoregressive [--checkpoint DIR] [--lengths 1,2,4,8] [--steps 10]

With the cache (a ring buffer of `window` frames) each chunk costs the same whatever came before,
so the time per chunk is flat in clip length. Without it the matrix sampler runs the whole clip
through the DiT on every row (one row per step per chunk), so the time per chunk grows with
the clip. Timings exclude the first call (compilation), reported as first_call_s.
"""
from __future__ import annotations

import argparse

import jax

from benchmarks.common import timed, write
from vdm.cli import DEFAULT_CHECKPOINT
from vdm.generate.modes import chunk_bounds

PROMPT = "a red circle moving right on a blue background"


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks autoregressive")
  parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
  parser.add_argument("--lengths", default="1,2,4,8", help="multiples of the training length")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--chunk", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--name", default="autoregressive")
  args = parser.parse_args(argv)
  import vdm
  pipe = vdm.Pipeline.load(args.checkpoint)
  d = pipe.config.data
  lengths = [int(n) for n in args.lengths.split(",")]
  pipe.config.sample.max_frames = max(pipe.config.sample.max_frames,
                                      1 + (d.frames - 1) * max(lengths))
  rows = []
  for length in lengths:
    frames = 1 + (d.frames - 1) * length
    row = dict(length=f"{length}x", frames=frames)
    for cache in (True, False):
      request = pipe.resolve(PROMPT, mode="autoregressive", chunk=args.chunk, steps=args.steps,
                             seconds=frames / d.fps, kv_cache=cache)
      chunks = len(chunk_bounds(pipe.vae.latent_frames(frames), args.chunk))
      first, times = timed(lambda: pipe.generate(request), args.repeats)
      tag = "cache" if cache else "no_cache"
      row.update({f"{tag}_s_per_chunk": min(times) / chunks, f"{tag}_first_call_s": first})
    row["speedup"] = row["no_cache_s_per_chunk"] / row["cache_s_per_chunk"]
    rows.append(row)
  write(args.name, rows, dict(checkpoint=args.checkpoint, steps=args.steps, chunk=args.chunk,
                              window=request.window, repeats=args.repeats,
                              backend=jax.default_backend()))
