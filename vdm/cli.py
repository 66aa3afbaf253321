"""The `vdm` command line: train | sample | eval | data | post | plan | config | tokenizer.

  vdm train --config configs/spine.py[:arg] --workdir DIR [--set train.dit.steps=100]
  vdm sample --prompt "a red circle moving right on a blue background" --out clip.mp4
  vdm eval --suite adherence|rollout|vae|upscale|prediction --checkpoint DIR
  vdm data import DIR --out NAME      (then: vdm train --config configs/folder_t2v.py:NAME,BUCKET)
  vdm data prepare [''|wide|tall|tiny|moving_mnist]
  vdm post IN.mp4 --post "upscale(4)|deflicker(0.5)|sharpen(0.3)" --out OUT.mp4
  vdm plan --config configs/scale.py:wan1.3b_480p --devices 8 --device-memory 80GB --grid
  vdm config show --config configs/spine.py   # every field, its value and its doc
  vdm tokenizer --config configs/spine.py --out tokenizer.model

Bad input exits with 2 and one line, 'vdm <command>: error: ...'.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from vdm.cli_common import check_output_path, error_line

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "checkpoints", "spine")


def _default_checkpoint() -> str:
  return os.environ.get("VDM_CHECKPOINT", DEFAULT_CHECKPOINT)


def _load_config(args):
  from vdm.config import load_config
  return load_config(args.config, args.set)


def start_processes(args) -> None:
  """Joins a multi-process run when the flags or the environment say this is one of several
  processes (vdm.parallel.distributed); before any JAX computation."""
  from vdm.parallel import distributed
  if (args.process_id is None) != (args.num_processes is None):
    raise ValueError("--num-processes and --process-id go together")
  if distributed.launched_as_several(args.num_processes):
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def cmd_train(args) -> int:
  if args.seed is not None and not 0 <= args.seed < 2**32:
    raise ValueError(f"--seed {args.seed} must be an integer in [0, 2**32)")
  config = _load_config(args)  # a bad config fails before any process waits for the others
  start_processes(args)
  from vdm.train.run import run_training
  check_output_path(args.workdir, "--workdir", folder=True)
  if args.seed is not None:
    config.seed = args.seed
  model_dir = run_training(config, args.workdir, until=args.until)
  if model_dir:
    print(f"model written to {model_dir}")
  return 0


def cmd_sample(args) -> int:
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit, write_sidecar
  from vdm.video_io import VIDEO_SUFFIXES, StreamingVideoWriter, write_video
  if os.path.splitext(args.out)[1].lower() not in VIDEO_SUFFIXES:  # before any sampling
    raise ValueError(f"--out {args.out!r}: the file name must end in one of {VIDEO_SUFFIXES}")
  if os.path.exists(args.out) and not args.overwrite:
    raise FileExistsError(f"--out {args.out!r} exists; pass --overwrite to replace it")
  check_output_path(args.out, "--out")
  post_stages = None
  if args.post:
    from vdm.post.chain import parse_pipeline
    post_stages = parse_pipeline(args.post)  # a typo fails here, before any sampling
  parallel = parse_parallel(args.parallel)
  prompts = read_prompts(args.prompts) if args.prompts else None
  if prompts is not None:
    if post_stages:
      raise ValueError("--post applies to one --prompt at a time, not to --prompts")
    return sample_prompts(args, prompts, parallel)
  t0 = time.perf_counter()
  pipe = Pipeline.load(args.checkpoint, parallel=parallel)
  request = pipe.resolve(args.prompt, negative_prompt=args.negative_prompt, seed=args.seed,
                         seconds=args.seconds, fps=args.fps, aspect=args.aspect,
                         resolution=args.resolution, steps=args.steps, guidance=args.guidance,
                         mode=args.mode, sampler=args.sampler, chunk=args.chunk,
                         context_noise=args.context_noise, image=args.image,
                         kv_cache=not args.no_kv_cache, extend=args.extend)
  load_seconds = time.perf_counter() - t0
  # Options of the chunked modes do nothing in the others: refuse them rather than drop them.
  chunked = ("autoregressive", "rolling")
  unused = [flag for flag, given, modes in (
      ("--chunk", args.chunk is not None, chunked),
      ("--context-noise", args.context_noise is not None, chunked),
      ("--no-kv-cache", args.no_kv_cache, ("autoregressive",)))
            if given and request.mode not in modes]
  if unused:
    raise ValueError(f"{', '.join(unused)}: not used by --mode {request.mode} (they apply to "
                     "autoregressive; --chunk and --context-noise also to rolling)")
  if post_stages:  # post-processing needs the whole clip (stabilization, deflicker)
    from vdm.post.chain import apply_pipeline
    result = pipe.generate(request)
    result["frames"] = apply_pipeline(result["frames"], post_stages)
    write_video(args.out, result["frames"], request.fps, overwrite=args.overwrite)
  else:  # frames go to the file as they are ready (per chunk in autoregressive mode)
    with StreamingVideoWriter(args.out, request.fps, overwrite=args.overwrite) as writer:
      result = pipe.generate(request, on_frames=writer.add)
  sidecar = write_sidecar(args.out, dict(
      request=dataclasses.asdict(request),
      checkpoint=os.path.abspath(args.checkpoint), git_commit=git_commit(), post=args.post,
      config=pipe.config.to_dict(),
      timings=dict(load_seconds=load_seconds, generate_seconds=result["seconds_total"]),
      frames_shape=list(result["frames"].shape)))
  print(f"wrote {args.out} ({result['frames'].shape[0]} frames, "
        f"{result['frames'].shape[2]}x{result['frames'].shape[1]}, {request.fps} fps) "
        f"and {sidecar} in {time.perf_counter() - t0:.1f}s")
  return 0


def parse_parallel(items: list[str]) -> dict | None:
  """--parallel data=4 --parallel sequence=2 -> {'data': 4, 'sequence': 2} (None: one device)."""
  from vdm.parallel import MESH_AXES
  out = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or key not in MESH_AXES + ("sequence_attention",):
      raise ValueError(f"--parallel {item!r}: expected FIELD=VALUE with FIELD one of "
                       f"{MESH_AXES + ('sequence_attention',)}")
    try:
      out[key] = value if key == "sequence_attention" else int(value)
    except ValueError:
      raise ValueError(f"--parallel {item!r}: {key} takes an integer (-1: the remaining "
                       "devices)") from None
  return out or None


def read_prompts(path: str) -> list[str]:
  """The prompts of a --prompts file: one per line, blank lines and '#' comments skipped."""
  if not os.path.isfile(path):
    raise ValueError(f"--prompts {path!r}: no such file")
  with open(path, encoding="utf-8") as f:
    prompts = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  if not prompts:
    raise ValueError(f"--prompts {path!r} holds no prompt (one per line)")
  return prompts


def sample_prompts(args, prompts: list[str], parallel: dict | None) -> int:
  """`vdm sample --prompts FILE`: every prompt in one batch (split over the mesh's data-parallel
  devices), prompt i with seed --seed + i, written to OUT_<i>.mp4 with its sidecar."""
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit, write_sidecar
  from vdm.video_io import write_video
  stem, suffix = os.path.splitext(args.out)
  outs = [f"{stem}_{i}{suffix}" for i in range(len(prompts))]
  taken = [o for o in outs if os.path.exists(o)]
  if taken and not args.overwrite:
    raise FileExistsError(f"--out: {taken[0]!r} exists; pass --overwrite to replace it")
  t0 = time.perf_counter()
  pipe = Pipeline.load(args.checkpoint, parallel=parallel)
  options = dict(negative_prompt=args.negative_prompt, seconds=args.seconds, fps=args.fps,
                 aspect=args.aspect, resolution=args.resolution, steps=args.steps,
                 guidance=args.guidance, mode=args.mode, sampler=args.sampler, chunk=args.chunk,
                 context_noise=args.context_noise, kv_cache=not args.no_kv_cache)
  requests = [pipe.resolve(p, seed=args.seed + i, **options) for i, p in enumerate(prompts)]
  result = pipe.generate_batch(requests)
  for out, request, frames in zip(outs, requests, result["frames"]):
    write_video(out, frames, request.fps, overwrite=args.overwrite)
    write_sidecar(out, dict(request=dataclasses.asdict(request),
                            checkpoint=os.path.abspath(args.checkpoint), git_commit=git_commit(),
                            config=pipe.config.to_dict(), parallel=parallel,
                            timings=dict(batch_seconds=result["seconds_total"]),
                            frames_shape=list(frames.shape)))
  print(f"wrote {len(outs)} clips {outs[0]} ... {outs[-1]} in {time.perf_counter() - t0:.1f}s")
  return 0


EVAL_SUITES = ("adherence", "rollout", "vae", "upscale", "prediction")
EVAL_NUM = dict(adherence=48, rollout=8, vae=32, upscale=32, prediction=100)  # --num defaults
# The options each suite reads besides --checkpoint, --num and --out (the others must not be
# given: they would change nothing).
EVAL_OPTIONS = dict(adherence=("seed", "steps", "guidance"), rollout=("seed", "steps", "lengths"),
                    vae=(), upscale=(), prediction=("seed", "steps", "samples"))
EVAL_DEFAULTS = dict(seed=0, lengths="1,2,4", samples=4)


def cmd_eval(args) -> int:
  suite = args.suite_option or args.suite
  if suite not in EVAL_SUITES:
    raise ValueError(f"eval suite {suite!r}: allowed {list(EVAL_SUITES)}")
  if args.suite and args.suite_option and args.suite != args.suite_option:
    raise ValueError(f"eval suite given twice: {args.suite!r} and --suite {args.suite_option!r}")
  unused = [name for name in ("seed", "steps", "guidance", "lengths", "samples")
            if getattr(args, name) is not None and name not in EVAL_OPTIONS[suite]]
  if unused:
    raise ValueError(f"{', '.join('--' + n for n in unused)}: not used by the {suite} suite "
                     f"(it reads {', '.join('--' + n for n in EVAL_OPTIONS[suite]) or 'none'} "
                     "besides --checkpoint, --num and --out)")
  for name, value in EVAL_DEFAULTS.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  out = args.out or f"outputs/eval_{suite}.json"
  check_output_path(out, "--out")
  # None means the suite's default; any number given (0 included) is checked by the suite.
  num = args.num if args.num is not None else EVAL_NUM[suite]
  if suite == "adherence":
    from vdm.eval.run import run_adherence
    run_adherence(args.checkpoint, num=num, seed=args.seed, out=out,
                  steps=args.steps, guidance=args.guidance)
  elif suite == "rollout":
    from vdm.eval.rollout import run_rollout
    try:
      lengths = tuple(int(n) for n in args.lengths.split(","))
    except ValueError:
      lengths = ()
    if not lengths or min(lengths) < 1:
      raise ValueError(f"--lengths must be comma-separated integers >= 1 (multiples of the "
                       f"training length), got {args.lengths!r}")
    run_rollout(args.checkpoint, num=num, seeds=tuple(range(args.seed, args.seed + 3)),
                lengths=lengths, steps=args.steps, out=out)
  elif suite == "vae":
    from vdm.eval.run import run_vae_reconstruction
    run_vae_reconstruction(args.checkpoint, num=num, out=out)
  elif suite == "prediction":  # a model trained with configs/moving_mnist.py
    from vdm.eval.prediction import run_prediction
    run_prediction(args.checkpoint, num=num, samples=args.samples, seed=args.seed,
                   steps=args.steps, out=out)
  else:  # --checkpoint is an upscaler directory (checkpoints/sr_x2)
    from vdm.eval.run import run_upscale_eval
    run_upscale_eval(args.checkpoint, num=num, out=out)
  return 0


def cmd_plan(args) -> int:
  from vdm.config import load_config
  from vdm.train.plan import format_table, grid_settings, parse_bytes, plan_denoiser
  memory = parse_bytes(args.device_memory) if args.device_memory else None
  config = _load_config(args)
  if args.out:
    check_output_path(args.out, "--out")
  if args.devices is not None:
    from vdm.parallel.mesh import use_cpu_devices
    use_cpu_devices(args.devices, "--devices")
  import jax
  settings = [("as configured", [])]
  if args.grid:
    settings += grid_settings(config, jax.device_count())
  plans = []
  for label, overrides in settings:
    variant = load_config(args.config, list(args.set) + overrides)
    plans.append(plan_denoiser(variant, label))
    print(f"[plan] {label}: peak {plans[-1].peak / 2**30:.2f} GiB per device", flush=True)
  print(f"# denoiser stage of {args.config}" + "".join(f" --set {s}" for s in args.set)
        + f", {plans[0].devices} devices ({jax.devices()[0].platform}), bytes per device in GiB")
  print(format_table(plans, memory))
  if args.out:
    from vdm.provenance import write_json
    write_json(args.out, dict(config=args.config, sets=list(args.set), device_memory=memory,
                              platform=jax.devices()[0].platform,
                              plans=[dict(dataclasses.asdict(p), peak=p.peak,
                                          fits=None if memory is None else p.fits(memory))
                                     for p in plans]))
  return 0


def cmd_config(args) -> int:
  from vdm.config import describe, load_config
  config = load_config(args.config, args.set)
  print(f"# {args.config}" + "".join(f" --set {s}" for s in args.set))
  print(describe(config))
  return 0


def cmd_tokenizer(args) -> int:
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  from vdm.train.run import caption_builder, training_captions
  if args.num_captions < 1:
    raise ValueError(f"--num-captions must be an integer >= 1, got {args.num_captions}")
  config = _load_config(args)
  check_output_path(args.out, "--out")
  # The captions `vdm train` trains its tokenizer on, for whichever dataset data.kind names.
  workdir = args.workdir or os.path.dirname(os.path.abspath(args.out))
  captions = training_captions(config, caption_builder(config, workdir), num=args.num_captions)
  tokenizer = Tokenizer(train_tokenizer(captions, vocab_size=config.text.vocab_size,
                                        model_type=config.text.tokenizer))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  tokenizer.save(args.out)
  print(f"wrote {args.out} ({tokenizer.vocab_size} pieces)")
  return 0


def add_processes(p) -> None:
  """Flags of a multi-process run (one process per host; docs/scaling.md)."""
  p.add_argument("--num-processes", type=int, default=None,
                 help="processes in the run (TPU pods and SLURM need none of these flags)")
  p.add_argument("--process-id", type=int, default=None, help="this process, in [0, N)")
  p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="process 0's address (default: $JAX_COORDINATOR_ADDRESS)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="vdm", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)

  def add_config(p):
    p.add_argument("--config", required=True, help="configs/<name>.py[:arg]")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, e.g. --set train.dit.steps=100")

  p = sub.add_parser("train", help="train tokenizer, [text encoder,] VAE and denoiser; export a "
                                   "model directory")
  add_config(p)
  p.add_argument("--workdir", required=True)
  p.add_argument("--seed", type=int, default=None, help="overrides config.seed")
  p.add_argument("--until", default="export", choices=("tokenizer", "text", "vae", "dit", "export"),
                 help="last stage to run (text: span-corruption pretraining of the text encoder, "
                      "when train.text.steps > 0)")
  add_processes(p)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("sample", help="generate a video from a prompt")
  prompt = p.add_mutually_exclusive_group(required=True)
  prompt.add_argument("--prompt")
  prompt.add_argument("--prompts", metavar="FILE",
                      help="one prompt per line, sampled as one batch: prompt i with seed "
                           "--seed + i, written to OUT_<i>.mp4")
  p.add_argument("--negative-prompt", default="")
  p.add_argument("--seed", type=int, default=0)
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
  p.add_argument("--no-kv-cache", action="store_true",
                 help="autoregressive mode: recompute the past every step (same result, slower)")
  p.add_argument("--checkpoint", default=_default_checkpoint())
  p.add_argument("--out", required=True, help="PATH.mp4 or PATH.gif; PATH.json is written beside")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--post", default="", metavar="PIPELINE",
                 help='finishing stages, e.g. "upscale(4)|deflicker(0.5)|sharpen(0.3)"')
  p.add_argument("--parallel", action="append", default=[], metavar="FIELD=N",
                 help="sample on a mesh, as the config's parallel section: data=4 splits "
                      "--prompts, sequence=2 a clip's frames (or tokens); default one device")
  p.set_defaults(func=cmd_sample)

  p = sub.add_parser("eval", help="evaluate a model; writes JSON and a markdown table")
  p.add_argument("suite", nargs="?", default=None, help=" | ".join(EVAL_SUITES))
  p.add_argument("--suite", dest="suite_option", default=None, help="same as the positional")
  p.add_argument("--checkpoint", default=_default_checkpoint())
  p.add_argument("--num", type=int, default=None,
                 help="prompts / clips (adherence 48, rollout 8, vae 32, upscale 32, "
                      "prediction 100)")
  p.add_argument("--seed", type=int, default=None, help="adherence, rollout, prediction (0)")
  p.add_argument("--steps", type=int, default=None, help="adherence, rollout, prediction")
  p.add_argument("--guidance", type=float, default=None, help="adherence")
  p.add_argument("--lengths", default=None,
                 help="rollout: multiples of the training length (1,2,4)")
  p.add_argument("--samples", type=int, default=None,
                 help="prediction: samples per clip, scored per sample and best-of-K (4)")
  p.add_argument("--out", default="", help="default outputs/eval_<suite>.json")
  p.set_defaults(func=cmd_eval)

  from vdm.data.cli import add_data_arguments
  add_data_arguments(sub)

  from vdm.post.cli import add_post_arguments, run_post_command
  p = add_post_arguments(sub.add_parser("post", help="run finishing stages over a video file"))
  p.set_defaults(func=run_post_command)

  p = sub.add_parser("plan", help="memory per device of the denoiser stage (params, optimizer, "
                                  "activations) without allocating; which settings fit")
  add_config(p)
  p.add_argument("--device-memory", default=None, metavar="SIZE",
                 help="e.g. 80GB (binary units): say which settings fit")
  p.add_argument("--devices", type=int, default=None, metavar="N",
                 help="plan on N simulated CPU devices (the mesh of a machine you do not have)")
  p.add_argument("--grid", action="store_true",
                 help="also every dit.remat, and FSDP over 2, 4, ... devices with full remat")
  p.add_argument("--out", default=None, help="also write the plans as JSON")
  p.set_defaults(func=cmd_plan)

  p = sub.add_parser("config", help="print a config field by field, with each field's doc")
  p.add_argument("action", choices=("show",))
  add_config(p)
  p.set_defaults(func=cmd_config)

  p = sub.add_parser("tokenizer", help="train the sentencepiece tokenizer on the captions `vdm "
                                       "train` would (those of the dataset data.kind names)")
  add_config(p)
  p.add_argument("--num-captions", type=int, default=20_000,
                 help="captions drawn from the spine's grammar (data.kind 'simple'); another "
                      "dataset gives all its train captions, as in `vdm train`")
  p.add_argument("--workdir", default=None,
                 help="a dataset other than the spine's is read from (or built in) WORKDIR/data "
                      "unless data.data_dir is set, as in `vdm train` (default: the folder of "
                      "--out)")
  p.add_argument("--out", required=True)
  p.set_defaults(func=cmd_tokenizer)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  # ValueError includes PipelineError and ConfigError; OSError is what the filesystem raises
  # for a path the checks above cannot foresee (a disk that fills, a file removed meanwhile).
  except (ValueError, OSError) as e:
    print(error_line(args.command, e), file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
