"""`vdm sample`'s command line: its options, and the command that runs them
(`vdm.generate.render` does the work). `vdm ui` parses its requests with the same options.

  vdm sample --prompt "a red circle moving right on a blue background" --out clip.mp4
  vdm sample --prompt "..." --sweep guidance=1,3,5 --out g.mp4   # 3 clips + g_grid.png/.gif
  vdm sample --checkpoint DIR --prompt "..." --audio --out clip.mp4   (a joint model: + clip.wav)
"""
from __future__ import annotations

import argparse
import os
import time

from vdm.cli_common import RaisingParser


DEFAULT_CHECKPOINT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "checkpoints",
    "spine")


def default_checkpoint() -> str:
  """The model `vdm sample` and `vdm eval` read by default: $VDM_CHECKPOINT, else the shipped
  checkpoints/spine."""
  return os.environ.get("VDM_CHECKPOINT", DEFAULT_CHECKPOINT)


def add_sample_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Adds `vdm sample`'s options to p (a subcommand's parser); returns p."""
  prompt = p.add_mutually_exclusive_group(required=True)
  prompt.add_argument("--prompt")
  prompt.add_argument("--prompts", metavar="TIMELINE",
                      help='a prompt timeline instead of --prompt: "0s: a red circle moving '
                           'right; 2s: a blue circle moving right" or a JSON file '
                           "(autoregressive, rolling; docs/control.md)")
  prompt.add_argument("--prompt-file", metavar="FILE",
                      help="one prompt per line, sampled as one batch (split over --parallel "
                           "data): prompt i with seed --seed + i, written to OUT_<i>.mp4")
  from vdm.control.timeline import SWITCHES
  p.add_argument("--switch", default=None, choices=SWITCHES,
                 help="--prompts: what a switch does to the earlier frames (default: the "
                      "model's sample.switch)")
  p.add_argument("--trajectory", default=None, metavar="JSON",
                 help="object paths to follow: points or keypoints per object (docs/control.md)")
  p.add_argument("--camera", default=None, metavar="MOVES",
                 help='camera path: moves like "pan(2,0)+zoom(1.3)" or a JSON file')
  p.add_argument("--negative-prompt", default=None,
                 help="default: the model's sample.negative_prompt ('' for the spine)")
  p.add_argument("--seed", type=int, default=None, help="default 0")
  p.add_argument("--seconds", type=float, default=None)
  p.add_argument("--fps", type=int, default=None)
  p.add_argument("--aspect", default=None, help="1:1 | 16:9 | 9:16")
  p.add_argument("--resolution", type=int, default=None, help="short side in pixels")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--guidance", type=float, default=None)
  from vdm.diffusion.samplers import SAMPLERS
  from vdm.generate.modes import MODES, pipeline_modes
  p.add_argument("--mode", default=None, choices=pipeline_modes(), metavar="MODE",
                 help="; ".join(f"{m}: {MODES[m].doc}" for m in pipeline_modes())
                 + " (default: the model's sample.mode)")
  p.add_argument("--sampler", default=None, choices=tuple(SAMPLERS), metavar="SAMPLER",
                 help=" | ".join(SAMPLERS))
  p.add_argument("--chunk", type=int, default=None,
                 help="latent frames per chunk (autoregressive, rolling)")
  p.add_argument("--extend", default=None, metavar="VIDEO",
                 help="continue this video autoregressively by --seconds; writes it plus the "
                      "new frames")
  p.add_argument("--context-noise", type=float, default=None,
                 help="noise level of finished chunks seen as context (Diffusion Forcing)")
  p.add_argument("--image", default=None, help="PNG pinned as the first frame")
  p.add_argument("--audio", action="store_true",
                 help="a joint audio-video model: generate the soundtrack too (.mp4 with an AAC "
                      "track and PATH.wav beside it; --out PATH.wav writes the sound alone)")
  p.add_argument("--audio-from", default=None, metavar="FILE",
                 help="a sound file (any format ffmpeg reads): generate the video for it")
  p.add_argument("--video-from", default=None, metavar="VIDEO",
                 help="a video file: generate its soundtrack")
  p.add_argument("--audio-guidance", type=float, default=None,
                 help="guidance scale of the audio stream (default: the model's "
                      "sample.audio_guidance)")
  p.add_argument("--no-kv-cache", action="store_true",
                 help="autoregressive and rolling modes: run the whole noise-level matrix, "
                      "recomputing the past every step (same result, slower; at most "
                      "sample.max_frames)")
  p.add_argument("--checkpoint", default=default_checkpoint())
  p.add_argument("--out", required=True, help="PATH.mp4 or PATH.gif (with sound: PATH.mp4 or "
                                              "PATH.wav); PATH.json is written beside")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--post", default="", metavar="PIPELINE",
                 help='finishing stages, e.g. "upscale(4)|deflicker(0.5)|sharpen(0.3)"')
  p.add_argument("--parallel", action="append", default=[], metavar="FIELD=N",
                 help="sample on a mesh, as the config's parallel section: data=4 splits "
                      "--prompt-file's prompts, sequence=2 a clip's frames (or tokens); default "
                      "one device (docs/scaling.md)")
  from vdm.generate.sweep import SWEEP_AXES
  p.add_argument("--sweep", default=None, metavar="AXIS=V1,V2,...",
                 help=f"one clip per value of one axis ({' | '.join(SWEEP_AXES)}), written as "
                      "OUT_AXIS-VALUE.mp4, and the grids OUT_grid.png (rows: values; columns: "
                      "frames) and OUT_grid.gif (the clips side by side), e.g. guidance=1,3,5")
  p.set_defaults(func=run_sample_command)
  return p


def sample_parser() -> argparse.ArgumentParser:
  """A parser of `vdm sample`'s options alone that raises `vdm.cli_common.UsageError` with the
  command's own message instead of exiting (`vdm ui` checks its requests with it)."""
  return add_sample_arguments(RaisingParser(prog="vdm sample"))


def _step_bar():
  """A tqdm bar over the sampler steps of each clip (all chunks), made at the first step so that
  a command refused before sampling prints its error line alone; returns (on_step, close)."""
  from tqdm.auto import tqdm
  bars = []

  def on_step(progress):
    total = progress.steps * progress.chunks
    if not bars:
      bars.append(tqdm(desc="sampling", unit="step", leave=False,
                       disable=os.environ.get("VDM_NO_PROGRESS") == "1"))
    bar = bars[0]
    if bar.total != total:
      bar.reset(total=total)
    bar.n = (progress.chunk - 1) * progress.steps + progress.step
    bar.refresh()

  return on_step, lambda: [bar.close() for bar in bars]


def run_sample_command(args) -> int:
  """`vdm sample`: runs `vdm.generate.render.run_sample` with a progress bar; prints what it
  wrote."""
  from vdm.generate.render import run_sample
  t0 = time.perf_counter()
  # The bar's step callback is always in the sampler (shown or not), so the command runs the same
  # program, and writes the same bytes, as `vdm ui` does with its progress display.
  on_step, close_bar = _step_bar()
  try:
    result = run_sample(args, on_step=on_step)
  finally:
    close_bar()
  for clip in result["clips"]:
    record = clip["record"]
    shape, fps = record["frames_shape"], record["request"]["fps"]
    sound = (f" with {record['audio_samples'] / record['sample_rate']:.3g} s of sound "
             f"({record['wav']})" if "wav" in record else "")
    print(f"wrote {clip['out']} ({shape[0]} frames, {shape[2]}x{shape[1]}, {fps} fps){sound} "
          f"and {clip['sidecar']}")
  if result["grid"]:
    grid = result["grid"]
    print(f"wrote {grid['png']}, {grid['gif']} and {grid['json']}")
  print(f"done in {time.perf_counter() - t0:.1f}s")
  return 0
