"""Few-step and guidance-distilled sampling against the teacher: DiT rows per step, DiT forward
passes per clip, clip latency, and for autoregressive streaming the time to the first frame and
the frames per second.

  python -m benchmarks fast [--teacher DIR] [--students DIR,DIR] [--repeats N] [--seconds S]

Rows per step are counted, not assumed: the DiT's forward is traced once per sampler step (the
sampler is a jax.lax.scan), and a wrapper records the rows of every traced call.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import jax

from benchmarks.common import write

PROMPT = "a red circle moving right on a blue background"


@contextlib.contextmanager
def counted_rows():
  """Records the batch rows of every DiT forward traced inside the block (caches cleared, so
  every sampler is traced anew)."""
  from vdm.dit import model as dit_model
  rows, original = [], dit_model.DiT._forward

  def counting(self, z, *args, **kwargs):
    rows.append(int(z.shape[0]))
    return original(self, z, *args, **kwargs)

  jax.clear_caches()
  dit_model.DiT._forward = counting
  try:
    yield rows
  finally:
    dit_model.DiT._forward = original


def measure(pipe, name: str, *, steps: int, guidance: float, repeats: int, seconds: float,
            mode: str) -> dict:
  """One row: a clip of `seconds` in `mode` at `steps` and `guidance`."""
  request = pipe.resolve(PROMPT, steps=steps, guidance=guidance, mode=mode, seconds=seconds)
  with counted_rows() as rows:
    pipe.generate(request)  # compiles; the forwards traced are one sampler step's
  per_step = sum(rows) if mode == "parallel" else max(rows)  # streaming: the cache pass too
  firsts, totals = [], []
  for _ in range(repeats):
    marks = []
    t0 = time.perf_counter()
    pipe.generate(request, on_frames=lambda frames: marks.append(time.perf_counter()))
    totals.append(time.perf_counter() - t0)
    firsts.append(marks[0] - t0)
  if mode == "parallel":
    calls = steps
  else:  # each chunk: its steps, then one pass at the context level that fills the cache
    from vdm.generate.modes import chunk_bounds
    calls = len(chunk_bounds(pipe.vae.latent_frames(request.frames), request.chunk)) * (steps + 1)
  return dict(model=name, mode=mode, steps=steps, guidance=guidance, frames=request.frames,
              dit_rows_per_step=per_step, dit_row_passes=per_step * calls,
              first_frame_s_min=min(firsts), first_frame_s_median=statistics.median(firsts),
              clip_s_min=min(totals), clip_s_median=statistics.median(totals),
              fps_median=request.frames / statistics.median(totals))


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks fast")
  parser.add_argument("--teacher", default="checkpoints/spine_forcing")
  parser.add_argument("--students", default="",
                      help="comma-separated student model directories (vdm train --config "
                           "configs/fast.py:VARIANT); none: the teacher alone")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=4.0,
                      help="length of the autoregressive (streamed) clip")
  parser.add_argument("--modes", default="parallel,autoregressive",
                      help="comma-separated: parallel (1 s clips) and/or autoregressive")
  parser.add_argument("--teacher-steps", default="25,4",
                      help="comma-separated step counts of the teacher's parallel rows (the "
                           "first also its autoregressive row)")
  args = parser.parse_args(argv)
  modes = args.modes.split(",")
  if not modes or not set(modes) <= {"parallel", "autoregressive"}:
    parser.error(f"--modes {args.modes!r}: allowed parallel, autoregressive")
  teacher_steps = [int(n) for n in args.teacher_steps.split(",")]
  import vdm
  rows = []

  def rows_of(pipe, name, parallel_steps, guidance):
    if "parallel" in modes:
      for steps in parallel_steps:
        rows.append(measure(pipe, name, steps=steps, guidance=guidance, repeats=args.repeats,
                            seconds=1.0, mode="parallel"))
    if "autoregressive" in modes:
      rows.append(measure(pipe, name, steps=parallel_steps[0], guidance=guidance,
                          repeats=args.repeats, seconds=args.seconds, mode="autoregressive"))

  teacher = vdm.Pipeline.load(args.teacher)
  g = teacher.config.sample.guidance
  rows_of(teacher, "teacher", teacher_steps, g)
  for directory in filter(None, args.students.split(",")):
    pipe = vdm.Pipeline.load(directory)
    s = pipe.config.sample
    name = os.path.basename(os.path.dirname(os.path.abspath(directory)))
    guidance = g if pipe.config.dit.guidance_input else s.guidance
    rows_of(pipe, name, sorted({s.steps, 1}, reverse=True), guidance)
  write("fast", rows, dict(teacher=args.teacher, students=args.students,
                           repeats=args.repeats, backend=jax.default_backend()))
