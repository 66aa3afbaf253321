"""`vdm post IN.mp4 --post "..." --out OUT.mp4 [--overwrite]`: run a pipeline over a video file.

The pipeline is parsed (and its LUT files read) before the video is, and the output is written
atomically, so a typo costs nothing and a failed run never leaves a half-written file.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from vdm.post import common
from vdm.post.chain import PipelineError, apply_pipeline, format_pipeline, parse_pipeline


def add_post_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Adds the `vdm post` arguments to a (sub)parser."""
  parser.add_argument("input", metavar="IN", help="input video (.mp4 or .gif)")
  parser.add_argument("--post", required=True, metavar="PIPELINE",
                      help='stages separated by "|", e.g. "upscale(2)|deflicker(0.5)|'
                           'grade(lut=film.cube)|sharpen(0.3)|stabilize()"')
  parser.add_argument("--out", required=True, metavar="OUT", help="output .mp4 or .gif")
  parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
  parser.add_argument("--fps", type=float, default=None,
                      help="output frame rate (default: the input's)")
  parser.add_argument("--chunk", type=int, default=common.DEFAULT_CHUNK,
                      help="frames processed per jitted call (memory vs. speed)")
  return parser


def _input_fps(path: str) -> float:
  import mediapy
  with mediapy.VideoReader(path) as reader:
    return float(reader.metadata.fps)


def _fail(error: BaseException) -> int:
  from vdm.cli_common import error_line
  print(error_line("post", error), file=sys.stderr)
  return 2


def run_post_command(args: argparse.Namespace) -> int:
  """Runs `vdm post`; returns the process exit code (0 ok, 2 bad arguments or input)."""
  from vdm import video_io  # sets up the bundled ffmpeg
  from vdm.cli_common import check_output_path
  try:
    stages = parse_pipeline(args.post)
  except PipelineError as e:
    return _fail(e)
  try:  # every check that needs no pixels, before the video is read
    if os.path.splitext(args.out)[1].lower() not in video_io.VIDEO_SUFFIXES:
      raise ValueError(f"--out {args.out!r}: the file name must end in one of "
                       f"{video_io.VIDEO_SUFFIXES}")
    if os.path.exists(args.out) and not args.overwrite:
      raise FileExistsError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    if os.path.abspath(args.out) == os.path.abspath(args.input):
      raise ValueError("--out must differ from the input file")
    check_output_path(args.out, "--out")
    if args.fps is not None:
      common.check_number("--fps", "frames per second", args.fps, 1, 1000)
    common.check_chunk(args.chunk, "--chunk")
    frames = video_io.read_video(args.input)
    fps = args.fps or _input_fps(args.input)
  except (OSError, ValueError) as e:
    return _fail(e)
  t0 = time.perf_counter()
  try:
    out = apply_pipeline(frames, stages, chunk=args.chunk)  # e.g. a model= that is no upscaler
  except ValueError as e:
    return _fail(e)
  seconds = time.perf_counter() - t0
  video_io.write_video(args.out, out, fps=int(round(fps)), overwrite=args.overwrite)
  # Written beside the output (same convention as `vdm sample`) so the result can be reproduced.
  from vdm.provenance import git_commit, write_sidecar
  sidecar = write_sidecar(args.out, dict(
      input=os.path.abspath(args.input), post=args.post, stages=format_pipeline(stages),
      git_commit=git_commit(),
      frames=int(frames.shape[0]), input_size=list(frames.shape[1:3]),
      output_size=list(out.shape[1:3]), fps=fps, seconds=round(seconds, 3)))
  print(f"wrote {args.out} ({out.shape[0]} frames, {out.shape[2]}x{out.shape[1]}) and {sidecar} "
        f"in {seconds:.1f}s")
  return 0
