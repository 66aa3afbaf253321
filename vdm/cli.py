"""The `vdm` command line: train | sample | eval | data | post | plan | config | tokenizer |
convert | models | ui.

  vdm train --config configs/spine.py[:arg] --workdir DIR [--set train.dit.steps=100]
  vdm sample --prompt "a red circle moving right on a blue background" --out clip.mp4
  vdm sample --prompt "..." --sweep guidance=1,3,5 --out g.mp4   # 3 clips + g_grid.png/.gif
  vdm sample --checkpoint DIR --prompt "..." --audio --out clip.mp4   (a joint model: + clip.wav)
  vdm eval --suite adherence|rollout|vae|upscale|prediction|control|av-sync --checkpoint DIR
  vdm data import DIR --out NAME      (then: vdm train --config configs/folder_t2v.py:NAME,BUCKET)
  vdm data prepare [''|wide|tall|tiny|moving_mnist]
  vdm post IN.mp4 --post "upscale(4)|deflicker(0.5)|sharpen(0.3)" --out OUT.mp4
  vdm plan --config configs/scale.py:gpu8 --devices 8 --device-memory 80GB --grid
  vdm config show --config configs/spine.py   # every field, its value and its doc
  vdm tokenizer --config configs/spine.py --out tokenizer.model
  vdm convert WAN_DIR --out MODEL_DIR   # a downloaded Wan2.1 directory -> a vdm model directory
  vdm models                          # model directories and named configs
  vdm ui [--checkpoint DIR ...] [--port 8765]   # http://127.0.0.1:8765

Bad input exits with 2 and one line, 'vdm <command>: error: ...'.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from vdm.cli_common import check_output_path, error_line
# DEFAULT_CHECKPOINT stays importable from here (the benchmarks read it).
from vdm.generate.cli import DEFAULT_CHECKPOINT, default_checkpoint  # noqa: F401


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


def cmd_models(args) -> int:
  from vdm.catalog import describe_models, list_models
  entries = list_models(args.checkpoint or None, configs=not args.no_configs)
  if args.json:
    import json
    print(json.dumps(entries, indent=2))
  else:
    print(describe_models(entries))
  return 0


def cmd_ui(args) -> int:
  from vdm.ui.server import serve
  return serve(checkpoints=args.checkpoint, host=args.host, port=args.port, out=args.out,
               queue_size=args.queue)


EVAL_SUITES = ("adherence", "rollout", "coherence", "vae", "upscale", "prediction", "control",
               "av-sync")
EVAL_NUM = dict(adherence=48, rollout=8, coherence=16, vae=32, upscale=32,  # --num defaults
                prediction=100, control=16, **{"av-sync": 32})
# The options each suite reads besides --checkpoint, --num and --out (the others must not be
# given: they would change nothing).
EVAL_OPTIONS = dict(adherence=("seed", "steps", "guidance"), rollout=("seed", "steps", "lengths"),
                    coherence=("seed", "steps", "lengths"), vae=(), upscale=(),
                    prediction=("seed", "steps", "samples"),
                    control=("seed", "steps", "guidance"),
                    **{"av-sync": ("seed", "steps", "guidance")})
EVAL_DEFAULTS = dict(seed=0, samples=4)
EVAL_LENGTHS = dict(rollout="1,2,4", coherence="1,4,8,16")  # --lengths defaults


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
  if args.lengths is None:
    args.lengths = EVAL_LENGTHS.get(suite)
  out = args.out or f"outputs/eval_{suite}.json"
  check_output_path(out, "--out")
  # None means the suite's default; any number given (0 included) is checked by the suite.
  num = args.num if args.num is not None else EVAL_NUM[suite]
  if suite == "adherence":
    from vdm.eval.run import run_adherence
    run_adherence(args.checkpoint, num=num, seed=args.seed, out=out,
                  steps=args.steps, guidance=args.guidance)
  elif suite in ("rollout", "coherence"):
    try:
      lengths = tuple(int(n) for n in args.lengths.split(","))
    except ValueError:
      lengths = ()
    if not lengths or min(lengths) < 1:
      raise ValueError(f"--lengths must be comma-separated integers >= 1 (multiples of the "
                       f"training length), got {args.lengths!r}")
    if suite == "rollout":
      from vdm.eval.rollout import run_rollout
      run_rollout(args.checkpoint, num=num, seeds=tuple(range(args.seed, args.seed + 3)),
                  lengths=lengths, steps=args.steps, out=out)
    else:
      from vdm.eval.coherence import run_coherence
      run_coherence(args.checkpoint, num=num, seed=args.seed, lengths=lengths,
                    steps=args.steps, out=out)
  elif suite == "vae":
    from vdm.eval.run import run_vae_reconstruction
    run_vae_reconstruction(args.checkpoint, num=num, out=out)
  elif suite == "control":  # a model trained with configs/control.py
    from vdm.eval.control import run_control
    run_control(args.checkpoint, num=num, seed=args.seed, steps=args.steps,
                guidance=args.guidance, out=out)
  elif suite == "av-sync":  # a joint audio-video model (configs/audio.py)
    from vdm.eval.run import run_av_sync
    run_av_sync(args.checkpoint, num=num, seed=args.seed, steps=args.steps,
                guidance=args.guidance, out=out)
  elif suite == "prediction":  # a model trained with configs/moving_mnist.py
    from vdm.eval.prediction import run_prediction
    run_prediction(args.checkpoint, num=num, samples=args.samples, seed=args.seed,
                   steps=args.steps, out=out)
  else:  # --checkpoint is an upscaler directory (checkpoints/sr_x2)
    from vdm.eval.run import run_upscale_eval
    run_upscale_eval(args.checkpoint, num=num, out=out)
  return 0


def cmd_convert(args) -> int:
  from vdm.convert.wan import load_wan
  from vdm.models import save_model_dir
  from vdm.provenance import write_provenance
  if os.path.exists(args.out):
    raise FileExistsError(f"--out {args.out!r} exists; choose a new directory")
  check_output_path(args.out, "--out", folder=True)
  if args.generator is not None and not os.path.isfile(args.generator):
    raise ValueError(f"--generator {args.generator!r}: no such file")
  config, tokenizer, vae, denoiser, stats = load_wan(
      args.directory, generator=args.generator, generator_key=args.generator_key,
      schedule=args.schedule)
  save_model_dir(args.out, config=config, tokenizer=tokenizer, vae=vae, denoiser=denoiser,
                 latent_stats=stats)
  write_provenance(args.out, config.seed)
  print(f"wrote {args.out} ({config.name}: a vdm model directory)")
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
  p.add_argument("--until", default="export",
                 choices=("tokenizer", "text", "vae", "audio", "dit", "export"),
                 help="last stage to run (text: span-corruption pretraining of the text encoder, "
                      "when train.text.steps > 0; audio: the audio VAE, when audio.enabled)")
  add_processes(p)
  p.set_defaults(func=cmd_train)

  from vdm.generate.cli import add_sample_arguments
  add_sample_arguments(sub.add_parser("sample", help="generate a video from a prompt"))

  p = sub.add_parser("models", help="list model directories and named configs: size, "
                                    "resolution, modes, features")
  p.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                 help="a model directory, or a folder of them (repeatable; default: "
                      "checkpoints/ and workdirs/*/model)")
  p.add_argument("--no-configs", action="store_true", help="model directories only")
  p.add_argument("--json", action="store_true", help="print JSON instead of a table")
  p.set_defaults(func=cmd_models)

  p = sub.add_parser("ui", help="a local web page: one prompt on two models or modes side by "
                                "side, sweeps as grids")
  p.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                 help="a model directory, or a folder of them, the page offers (repeatable; "
                      "default: checkpoints/ and workdirs/*/model)")
  p.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
  p.add_argument("--host", default="127.0.0.1",
                 help="address to bind (default 127.0.0.1: this machine only)")
  p.add_argument("--out", default="outputs/ui",
                 help="folder of the results: one new subfolder per request")
  p.add_argument("--queue", type=int, default=8, help="requests that may wait (more are refused)")
  p.set_defaults(func=cmd_ui)

  p = sub.add_parser("eval", help="evaluate a model; writes JSON and a markdown table")
  p.add_argument("suite", nargs="?", default=None, help=" | ".join(EVAL_SUITES))
  p.add_argument("--suite", dest="suite_option", default=None, help="same as the positional")
  p.add_argument("--checkpoint", default=default_checkpoint())
  p.add_argument("--num", type=int, default=None,
                 help="prompts / clips (adherence 48, rollout 8, coherence 16, vae 32, "
                      "upscale 32, prediction 100, control 16 per part, av-sync 32)")
  p.add_argument("--seed", type=int, default=None,
                 help="adherence, rollout, coherence, prediction, control, av-sync (0)")
  p.add_argument("--steps", type=int, default=None,
                 help="adherence, rollout, coherence, prediction, control, av-sync")
  p.add_argument("--guidance", type=float, default=None, help="adherence, control, av-sync")
  p.add_argument("--lengths", default=None,
                 help="rollout (1,2,4), coherence (1,4,8,16): multiples of the training "
                      "length")
  p.add_argument("--samples", type=int, default=None,
                 help="prediction: samples per clip, scored per sample and best-of-K (4)")
  p.add_argument("--out", default="", help="default outputs/eval_<suite>.json")
  p.set_defaults(func=cmd_eval)

  from vdm.data.cli import add_data_arguments
  add_data_arguments(sub)

  from vdm.post.cli import add_post_arguments, run_post_command
  p = add_post_arguments(sub.add_parser("post", help="run finishing stages over a video file"))
  p.set_defaults(func=run_post_command)

  p = sub.add_parser("convert", help="a downloaded Wan2.1 directory (diffusers or original "
                                     "layout) -> a vdm model directory")
  p.add_argument("directory", help="the Wan2.1 directory (its layout is detected)")
  p.add_argument("--out", required=True, help="the vdm model directory to write (must not exist)")
  from vdm.convert.wan import GENERATORS
  p.add_argument("--generator", default=None, help="a Self-Forcing or CausVid checkpoint (.pt) "
                 "whose DiT replaces the directory's (docs/wan.md)")
  p.add_argument("--generator-key", default="generator",
                 help="the state dict to read from --generator (generator | generator_ema)")
  p.add_argument("--schedule", default="self-forcing", choices=tuple(GENERATORS),
                 help="how the --generator samples (its few-step levels and shift)")
  p.set_defaults(func=cmd_convert)

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
  except BrokenPipeError:
    # The reader of stdout went away (`vdm config show ... | head`): not an error of the input.
    # Point stdout at devnull so the interpreter's final flush cannot raise again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1
  # ValueError includes PipelineError and ConfigError; OSError is what the filesystem raises
  # for a path the checks above cannot foresee (a disk that fills, a file removed meanwhile).
  except (ValueError, OSError) as e:
    print(error_line(args.command, e), file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
