"""What `vdm sample` does with its parsed command line: video files and their sidecars (one clip,
or a sweep's clips and grids). `vdm sample` and `vdm ui` both call `run_sample`, so a clip made
from the page is the same bytes as the command the page shows beside it.

Order of work, so that bad input loses nothing: the checks that need no model (file names,
existing files, --post, --sweep), then the model, then every request resolved (all of a sweep's
values) before the first step is sampled. Each file appears under its name only once complete
(`vdm.video_io`, `vdm.provenance`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import os
import time

from vdm.cli_common import check_output_path
from vdm.generate import sweep as sweeps

def _refuse_unused(args: argparse.Namespace, mode: str) -> None:
  """Options of the chunked modes do nothing in the others: they are refused rather than
  dropped. Which modes read them is the mode registry's (`Mode.chunked`, `Mode.streams`)."""
  from vdm.generate.modes import MODES, pipeline_modes
  chunked = [m for m in pipeline_modes() if MODES[m].chunked]
  streamed = [m for m in pipeline_modes() if MODES[m].streams]
  unused = [f"{flag}: not used by --mode {mode} (only by {', '.join(modes)})"
            for flag, given, modes in (
                ("--chunk", args.chunk is not None, chunked),
                ("--context-noise", args.context_noise is not None, chunked),
                ("--no-kv-cache", args.no_kv_cache, streamed))
            if given and mode not in modes]
  if unused:
    raise ValueError("; ".join(unused))


def resolve(pipe, args: argparse.Namespace):
  """The validated `vdm.generate.pipeline.Request` of `vdm sample`'s arguments."""
  request = pipe.resolve(args.prompt, negative_prompt=args.negative_prompt,
                         seed=0 if args.seed is None else args.seed, seconds=args.seconds,
                         fps=args.fps, aspect=args.aspect, resolution=args.resolution,
                         steps=args.steps, guidance=args.guidance, mode=args.mode,
                         sampler=args.sampler, chunk=args.chunk,
                         context_noise=args.context_noise, image=args.image,
                         kv_cache=not args.no_kv_cache, extend=args.extend,
                         trajectory=args.trajectory, camera=args.camera, prompts=args.prompts,
                         switch=args.switch, audio=args.audio, audio_from=args.audio_from,
                         video_from=args.video_from, audio_guidance=args.audio_guidance)
  _refuse_unused(args, request.mode)
  if args.audio_guidance is not None and not request.audio:
    raise ValueError("--audio-guidance: not used without sound (--audio, --audio-from or "
                     "--video-from)")
  return request


def with_sound(args: argparse.Namespace) -> bool:
  """Whether the command asks for a soundtrack (a joint audio-video model)."""
  return bool(args.audio or args.audio_from is not None or args.video_from is not None)


def wav_path(out: str) -> str:
  """The soundtrack written beside a video with sound (or --out itself when it is a .wav)."""
  return os.path.splitext(out)[0] + ".wav"


def _check_new(paths, overwrite: bool) -> None:
  for path in paths:
    if os.path.exists(path) and not overwrite:
      raise FileExistsError(f"--out {path!r} exists; pass --overwrite to replace it")


def parse_parallel(items: list[str] | None) -> dict | None:
  """--parallel data=4 --parallel sequence=2 -> {'data': 4, 'sequence': 2} (None: one device)."""
  from vdm.parallel import MESH_AXES
  fields = MESH_AXES + ("sequence_attention",)
  out = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or key not in fields:
      raise ValueError(f"--parallel {item!r}: expected FIELD=VALUE with FIELD one of {fields}")
    try:
      out[key] = value if key == "sequence_attention" else int(value)
    except ValueError:
      raise ValueError(f"--parallel {item!r}: {key} takes an integer (-1: the remaining "
                       "devices)") from None
  return out or None


def read_prompt_file(path: str) -> list[str]:
  """The prompts of a --prompt-file: one per line, blank lines and '#' comments skipped."""
  if not os.path.isfile(path):
    raise ValueError(f"--prompt-file {path!r}: no such file")
  with open(path, encoding="utf-8") as f:
    prompts = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  if not prompts:
    raise ValueError(f"--prompt-file {path!r} holds no prompt (one per line)")
  return prompts


def _prompt_file_clips(args: argparse.Namespace) -> list[tuple[argparse.Namespace, object]]:
  """--prompt-file: one clip per prompt, prompt i with seed --seed + i, to OUT_<i>.SUFFIX."""
  for flag, given in (("--post", args.post), ("--sweep", args.sweep)):
    if given:
      raise ValueError(f"{flag} applies to one --prompt at a time, not to --prompt-file")
  prompts = read_prompt_file(args.prompt_file)
  stem, suffix = os.path.splitext(args.out)
  seed = 0 if args.seed is None else args.seed
  clips = []
  for i, prompt in enumerate(prompts):
    clip = copy.copy(args)
    clip.prompt, clip.prompt_file, clip.seed = prompt, None, seed + i
    clip.out = f"{stem}_{i}{suffix}"
    clips.append((clip, None))
  _check_new([c.out for c, _ in clips], args.overwrite)
  return clips


def plan(args: argparse.Namespace) -> list[tuple[argparse.Namespace, object]]:
  """The clips a command line asks for, checked without the model: [(arguments of one clip,
  its sweep value or None)]; one entry without --sweep or --prompt-file. Raises ValueError /
  FileExistsError naming the option."""
  from vdm.video_io import VIDEO_SUFFIXES
  sound = with_sound(args)
  suffix = os.path.splitext(args.out)[1].lower()
  allowed = (".mp4", ".wav") if sound else VIDEO_SUFFIXES
  if suffix not in allowed:
    raise ValueError(f"--out {args.out!r}: the file name must end in one of {allowed}" + (
        " (.wav: the soundtrack alone; a GIF has no sound)" if sound else ""))
  if sound and args.sweep and suffix == ".wav":
    raise ValueError("--sweep writes video grids: --out must be a .mp4 with sound")
  check_output_path(args.out, "--out")
  parse_parallel(getattr(args, "parallel", None))  # a typo fails before the model loads
  if getattr(args, "prompt_file", None):
    return _prompt_file_clips(args)
  if args.post:
    from vdm.post.chain import parse_pipeline
    parse_pipeline(args.post)  # a typo fails here, before any sampling
  if not args.sweep:
    _check_new([args.out] + ([wav_path(args.out)] if sound and suffix != ".wav" else []),
               args.overwrite)
    return [(args, None)]
  axis, values = sweeps.parse_sweep(args.sweep)
  if getattr(args, axis) is not None:
    raise ValueError(f"--{axis} and --sweep {args.sweep!r} both set --{axis}: give one")
  paths = sweeps.sweep_paths(args.out, axis, values)
  _check_new(paths["clips"] + [paths["png"], paths["gif"], paths["json"]]
             + ([wav_path(c) for c in paths["clips"]] if sound else []), args.overwrite)
  clips = []
  for value, out in zip(values, paths["clips"]):
    clip = copy.copy(args)
    setattr(clip, axis, value)
    clip.out, clip.sweep = out, None
    clips.append((clip, value))
  return clips


def render(pipe, request, args: argparse.Namespace, *, load_seconds: float = 0.0,
           on_step=None, keep_frames: bool = True) -> dict:
  """Samples one resolved request and writes args.out and its sidecar; returns
  dict(frames uint8 [T, H, W, 3], out, sidecar, record) with record the sidecar's content.
  keep_frames=False: frames is None for a streamed clip (written chunk by chunk in bounded
  memory, however long)."""
  from vdm.provenance import git_commit, write_sidecar
  from vdm.video_io import StreamingVideoWriter, write_video, write_wav
  sound = {}
  if request.audio:  # a joint model: the whole clip and its soundtrack at once
    result = pipe.generate(request, on_step=on_step)
    if args.post:
      from vdm.post.chain import apply_pipeline, parse_pipeline
      result["frames"] = apply_pipeline(result["frames"], parse_pipeline(args.post))
      result["shape"] = result["frames"].shape
    wav = wav_path(args.out)
    write_wav(wav, result["audio"], result["sample_rate"], overwrite=args.overwrite)
    if not args.out.lower().endswith(".wav"):
      write_video(args.out, result["frames"], request.fps, overwrite=args.overwrite,
                  audio=result["audio"], sample_rate=result["sample_rate"])
    sound = dict(audio_samples=len(result["audio"]), sample_rate=result["sample_rate"], wav=wav)
  elif args.post:  # post-processing needs the whole clip (stabilization, deflicker)
    from vdm.post.chain import apply_pipeline, parse_pipeline
    result = pipe.generate(request, on_step=on_step)
    result["frames"] = apply_pipeline(result["frames"], parse_pipeline(args.post))
    result["shape"] = result["frames"].shape
    write_video(args.out, result["frames"], request.fps, overwrite=args.overwrite)
  else:  # frames go to the file as they are ready (per chunk in autoregressive mode)
    with StreamingVideoWriter(args.out, request.fps, overwrite=args.overwrite) as writer:
      result = pipe.generate(request, on_frames=writer.add, on_step=on_step,
                             keep_frames=keep_frames)
  record = dict(
      request=dataclasses.asdict(request),
      checkpoint=os.path.abspath(args.checkpoint), git_commit=git_commit(), post=args.post,
      config=pipe.config.to_dict(),
      timings=dict(load_seconds=load_seconds, generate_seconds=result["seconds_total"]),
      frames_shape=list(result["shape"]), **sound)
  sidecar = write_sidecar(args.out, record)
  return dict(frames=result["frames"], out=args.out, sidecar=sidecar, record=record)


def write_grids(args: argparse.Namespace, clips: list[dict], values: list) -> dict:
  """Writes a sweep's grid PNG, GIF and JSON beside its clips; returns dict(png, gif, json) of
  their paths."""
  import mediapy
  from vdm.provenance import git_commit, write_json
  from vdm.video_io import write_video
  axis, _ = sweeps.parse_sweep(args.sweep)
  paths = sweeps.sweep_paths(args.out, axis, values)
  frames = [c["frames"] for c in clips]
  partial = paths["png"] + ".partial.png"
  mediapy.write_image(partial, sweeps.grid_image(frames))
  os.replace(partial, paths["png"])
  fps = clips[0]["record"]["request"]["fps"]
  write_video(paths["gif"], sweeps.grid_video(frames), fps, overwrite=args.overwrite)
  length = max(len(f) for f in frames)
  write_json(paths["json"], dict(
      axis=axis, values=values, clips=[os.path.basename(c["out"]) for c in clips],
      png=dict(file=os.path.basename(paths["png"]), rows="one per value, in order",
               frames=sweeps.filmstrip_frames(length)),
      gif=dict(file=os.path.basename(paths["gif"]),
               columns=min(sweeps.GIF_COLUMNS, len(clips))),
      gutter=sweeps.GUTTER, git_commit=git_commit()))
  return {k: paths[k] for k in ("png", "gif", "json")}


def run_sample(args: argparse.Namespace, *, load=None, on_step=None, on_clip=None) -> dict:
  """Runs `vdm sample` for its parsed arguments (vdm.cli.build_parser).

  load(checkpoint) -> Pipeline (default `Pipeline.load`; `vdm ui` passes its cache).
  on_step(Progress) as in `Pipeline.generate`, for each clip; raise `Cancelled` there to stop.
  on_clip(index, clip dict) after each clip and its sidecar are written.
  Returns dict(clips=[dict(out, sidecar, record, value)], grid=None or the grid's paths).
  """
  planned = plan(args)
  parallel = parse_parallel(getattr(args, "parallel", None))
  t0 = time.perf_counter()
  if load is None:
    from vdm.generate.pipeline import Pipeline
    load = functools.partial(Pipeline.load, parallel=parallel)
  elif parallel:
    raise ValueError("--parallel: this caller loads its models itself, on one device")
  pipe = load(args.checkpoint)
  load_seconds = time.perf_counter() - t0
  requests = [resolve(pipe, clip_args) for clip_args, _ in planned]  # all before any sampling
  if getattr(args, "prompt_file", None):
    return _render_batch(pipe, requests, [c for c, _ in planned], parallel, load_seconds,
                         on_clip)
  clips = []
  for i, ((clip_args, value), request) in enumerate(zip(planned, requests)):
    # A sweep's grids need every clip's frames; one clip streams to its file alone.
    clip = render(pipe, request, clip_args, load_seconds=load_seconds, on_step=on_step,
                  keep_frames=bool(args.sweep))
    clip["value"] = value
    clips.append(clip)
    if on_clip is not None:
      on_clip(i, clip)
  grid = write_grids(args, clips, [v for _, v in planned]) if args.sweep else None
  return dict(clips=[{k: v for k, v in c.items() if k != "frames"} for c in clips], grid=grid)


def _render_batch(pipe, requests, clip_args, parallel, load_seconds, on_clip) -> dict:
  """--prompt-file: every request sampled as one batch (`Pipeline.generate_batch`, split over
  the mesh's data-parallel devices), each clip written with its sidecar; as `run_sample`."""
  from vdm.provenance import git_commit, write_sidecar
  from vdm.video_io import write_video
  result = pipe.generate_batch(requests)
  clips = []
  for i, (args, request, frames) in enumerate(zip(clip_args, requests, result["frames"])):
    write_video(args.out, frames, request.fps, overwrite=args.overwrite)
    record = dict(request=dataclasses.asdict(request),
                  checkpoint=os.path.abspath(args.checkpoint), git_commit=git_commit(),
                  config=pipe.config.to_dict(), parallel=parallel,
                  timings=dict(load_seconds=load_seconds,
                               batch_seconds=result["seconds_total"]),
                  frames_shape=list(frames.shape))
    clip = dict(out=args.out, sidecar=write_sidecar(args.out, record), record=record,
                value=None)
    clips.append(clip)
    if on_clip is not None:
      on_clip(i, clip)
  return dict(clips=clips, grid=None)
