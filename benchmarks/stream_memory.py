"""Peak memory of a long clip: `vdm sample --mode rolling|autoregressive --seconds S` for
several S, each in a fresh process, its peak resident set size read from the kernel.

  python -m benchmarks stream_memory [--checkpoint DIR] [--seconds 5,30,120]
                                     [--modes rolling,autoregressive] [--steps 25]

Both modes stream (KV cache, chunks written to the file as they finish), so the peak should be
flat in S: what grows with the clip is only its latents and the output file. Each run is a
separate `vdm sample` process started with `os.wait4`, whose rusage gives that child's own
ru_maxrss (bytes of the largest RSS it reached); the wall time includes start-up and compile.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import write
from vdm.cli import DEFAULT_CHECKPOINT

PROMPT = "a red circle moving right on a blue background"


def peak_rss(argv: list[str]) -> tuple[float, float]:
  """Runs argv as a child process; returns (its peak RSS in MiB, wall seconds)."""
  t0 = time.perf_counter()
  child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(child.pid, 0)
  seconds = time.perf_counter() - t0
  if os.waitstatus_to_exitcode(status) != 0:
    raise RuntimeError(f"{' '.join(argv)} failed: {child.stderr.read().decode()[-2000:]}")
  return usage.ru_maxrss / 1024.0, seconds  # ru_maxrss is in KiB on Linux


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks stream_memory")
  parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
  parser.add_argument("--seconds", default="5,30,120")
  parser.add_argument("--modes", default="rolling,autoregressive")
  parser.add_argument("--steps", type=int, default=25)
  parser.add_argument("--name", default="stream_memory")
  args = parser.parse_args(argv)
  vdm_command = os.path.join(os.path.dirname(sys.executable), "vdm")
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for mode in args.modes.split(","):
      for seconds in (float(s) for s in args.seconds.split(",")):
        out = os.path.join(tmp, f"{mode}_{seconds:g}.mp4")
        mib, wall = peak_rss([vdm_command, "sample", "--checkpoint", args.checkpoint,
                              "--prompt", PROMPT, "--mode", mode, "--seconds", str(seconds),
                              "--steps", str(args.steps), "--out", out])
        rows.append(dict(mode=mode, seconds=seconds, peak_rss_mib=mib, wall_s=wall,
                         file_kib=os.path.getsize(out) / 1024.0))
  write(args.name, rows, dict(checkpoint=os.path.abspath(args.checkpoint), steps=args.steps))
