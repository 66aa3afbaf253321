"""Parallel vs autoregressive generation, from one set of weights and against the usual baselines.

    python -m experiments.parallel_vs_ar                 # small: this CPU, ~1 h training + eval
    python -m experiments.parallel_vs_ar --size tiny     # seconds: the smoke test and the Colab

Trains (or reuses) three denoisers at equal compute on the spine's data, tokenizer and VAE
(`configs/parallel_vs_ar.py`: shared levels / Diffusion Forcing / teacher forcing), each with
every training seed of --train-seeds, samples held-out test prompts with every method below at
1x, 2x, 4x and 8x the training length with several sampling seeds, scores each frame against the
prompt (`vdm.eval.metrics.rollout`) and writes to `experiments/results/parallel_vs_ar/`:
table.md, results.json (per-seed means, config, git commit), drift curves, quality and speed
against length, and a frame grid. Means and stds are over training seeds x sampling seeds.

The learnedness gate: a model is compared only if it has learned the task, i.e. follows the
direction words at 1x in its native mode (`Method.native`) in >= --gate of the prompts, for
every training seed; table.md lists each variant's gate first and marks the methods of a
variant that fails it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil

import numpy as np
from tqdm.auto import tqdm

from vdm.config import load_config
from vdm.data import simple
from vdm.eval.metrics.drift import curve, plot_drift_curves
from vdm.eval.rollout import markdown_table, sample_and_score, summary_entry
from vdm.provenance import git_commit, write_json
from vdm.train.run import run_training

# Absolute, so the script and the notebook (run from colabs/) find it from any directory.
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "parallel_vs_ar.py")
VARIANTS = ("shared", "forcing", "teacher")
CONTEXT_NOISE = 0.1  # the Diffusion Forcing knob when a method uses noisy context


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  variant: str  # which trained denoiser
  mode: str
  chunk: str = "1"  # "1", or "big": a training clip's latent frames minus one (frame 0 alone)
  context_noise: float = 0.0
  native: bool = False  # the variant's own mode: the one its learnedness gate is judged in


METHODS = (
    Method("shared: parallel", "shared", "parallel", native=True),
    Method("forcing: parallel", "forcing", "parallel", native=True),
    Method("forcing: AR k=1", "forcing", "autoregressive"),
    Method("forcing: AR k=1, noisy ctx", "forcing", "autoregressive", context_noise=CONTEXT_NOISE),
    Method("forcing: AR k=big", "forcing", "autoregressive", "big"),
    Method("forcing: AR k=big, noisy ctx", "forcing", "autoregressive", "big", CONTEXT_NOISE),
    Method("forcing: rolling k=1", "forcing", "rolling"),
    Method("teacher: AR k=1", "teacher", "autoregressive", native=True),
    Method("teacher: AR k=1, noisy ctx", "teacher", "autoregressive", context_noise=CONTEXT_NOISE),
    Method("teacher: AR k=big", "teacher", "autoregressive", "big"),
)


def train_variants(size: str, workdir: str, base_workdir: str = "", *, config_path: str = CONFIG,
                   variants=VARIANTS, train_seeds=(0,)) -> dict[str, list[str]]:
  """Trains what is missing; returns variant -> model directories, one per training seed.

  The tokenizer and VAE are trained once (in `base_workdir`, default <workdir>/base, with the
  first variant's config) and copied into each variant's workdir, so the variants differ only in
  how the denoiser was trained. Training seed 0 trains in <workdir>/<variant>, seed k > 0 in
  <workdir>/<variant>_seed<k> (config.seed = k: the denoiser's init and its batches); a model
  already there is reused.
  """
  base = base_workdir or os.path.join(workdir, "base")
  base_config = load_config(f"{config_path}:{variants[0]},{size}")
  if not base_workdir:
    run_training(base_config, base, until="vae")
  with open(os.path.join(base, "config.json")) as f:  # where the base's data went
    data_dir = json.load(f)["data"].get("data_dir") or os.path.join(base, "data")
  models = {}
  for variant in variants:
    models[variant] = []
    for seed in train_seeds:
      vdir = os.path.join(workdir, variant if seed == 0 else f"{variant}_seed{seed}")
      model_dir = os.path.join(vdir, "model")
      if not os.path.exists(os.path.join(model_dir, "config.json")):
        os.makedirs(vdir, exist_ok=True)
        # The VAE is the base's whatever the seed: the first seed's workdir restores the base's
        # finished stage (copied); a later seed, whose data order differs, cannot restore that
        # checkpoint and takes the first seed's exported VAE as is (vae.init_from). The seed
        # changes the denoiser's init and its batch order.
        first = models[variant][0] if models[variant] else None
        items = ("tokenizer.model", "latent_stats.json") + (() if first else ("vae",))
        for item in items:
          src, dst = os.path.join(base, item), os.path.join(vdir, item)
          if os.path.exists(src) and not os.path.exists(dst):
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
        overrides = [f"data.data_dir='{os.path.abspath(data_dir)}'", f"seed={seed}"]
        if first:
          overrides.append(f"vae.init_from='{os.path.abspath(first)}'")
        config = load_config(f"{config_path}:{variant},{size}", overrides)
        run_training(config, vdir)
      models[variant].append(model_dir)
  return models


def _chunk(method: Method, train_latents: int) -> int:
  return 1 if method.chunk == "1" else train_latents - 1


def evaluate(models: dict[str, list[str]], *, prompts: int, seeds: list[int],
             lengths: list[int], steps: int | None = None, methods=METHODS) -> dict:
  """Samples every method x length x training seed x sampling seed x prompt; returns per-frame
  scores and timings. A row's 'seed' is (training seed index, sampling seed), so summaries are
  over both."""
  from vdm.generate.pipeline import Pipeline
  pipes = {v: [Pipeline.load(d) for d in dirs] for v, dirs in models.items()}
  config = pipes[methods[0].variant][0].config
  d = config.data
  train_latents = 1 + (d.frames - 1) // config.vae.temporal_downsample
  examples = [e for _, e in simple.generate_examples(d.seed, "test", prompts, d.height,
                                                     d.width, d.frames)]
  longest = 1 + (d.frames - 1) * max(lengths)
  for pipe in (p for ps in pipes.values() for p in ps):  # long parallel/rolling on purpose
    pipe.config.sample.max_frames = max(pipe.config.sample.max_frames, longest)
  results = {}
  total = sum(len(pipes[m.variant]) for m in methods) * len(lengths) * len(seeds) * len(examples)
  with tqdm(total=total, desc="parallel vs AR") as bar:
    for method in methods:
      for length in lengths:
        rows = []
        for k, pipe in enumerate(pipes[method.variant]):
          for row in sample_and_score(
              pipe, examples, frames=1 + (d.frames - 1) * length, seeds=seeds,
              train_frames=d.frames, fps=d.fps, resolution=min(d.height, d.width),
              progress=bar, keep_first_video=k == 0, steps=steps, mode=method.mode,
              chunk=_chunk(method, train_latents), context_noise=method.context_noise):
            rows.append(dict(row, seed=(k, row["seed"])))
        results[(method.name, length)] = rows
  return dict(results=results, train_frames=d.frames, fps=d.fps, config=config,
              methods=methods)


def learnedness_gate(evaluation: dict, threshold: float = 0.8) -> dict:
  """variant -> dict(method, direction per training seed, passed): the direction accuracy at 1x
  of each variant's native method, per training seed; passed when every seed reaches
  `threshold` (None when 1x was not sampled)."""
  gate = {}
  for method in (m for m in evaluation["methods"] if m.native):
    rows = evaluation["results"].get((method.name, 1))
    if rows is None:
      gate[method.variant] = dict(method=method.name, direction=None, passed=None)
      continue
    per_seed = [float(np.mean([r["direction_ok"] for r in rows if r["seed"][0] == k]))
                for k in sorted({r["seed"][0] for r in rows})]
    gate[method.variant] = dict(method=method.name, direction=per_seed,
                                passed=all(a >= threshold for a in per_seed))
  return gate


def gate_table(gate: dict, threshold: float) -> str:
  lines = [f"| variant | native mode | direction at 1x, per training seed | learned (>= "
           f"{threshold:.0%} every seed) |", "|---|---|---|---|"]
  for variant, g in gate.items():
    direction = ("not sampled" if g["direction"] is None else
                 ", ".join(f"{a:.0%}" for a in g["direction"]))
    passed = {None: "unknown", True: "yes", False: "**no: not compared**"}[g["passed"]]
    lines.append(f"| {variant} | {g['method']} | {direction} | {passed} |")
  return "\n".join(lines) + "\n"


def summarize(evaluation: dict) -> dict:
  """'method @ Lx' -> dict(method, length, frames, field -> dict(mean, std, per_seed))."""
  return dict(summary_entry(name, length, evaluation["train_frames"], rows)
              for (name, length), rows in evaluation["results"].items())


def write_outputs(evaluation: dict, out: str, *, args: dict, gate: float = 0.8) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(out, exist_ok=True)
  summary = summarize(evaluation)
  results = evaluation["results"]
  methods = list(dict.fromkeys(name for name, _ in results))
  lengths = sorted({length for _, length in results})
  longest = lengths[-1]
  train_frames = evaluation["train_frames"]

  for field, label in (("colour_error", "colour error (0 = clean two-colour frame)"),
                       ("object_ok", "object present, prompt colour (fraction)")):
    curves = {name: curve(np.stack([r[field] for r in results[(name, longest)]]))
              for name in methods}
    plot_drift_curves(curves, os.path.join(out, f"drift_{field}.png"), ylabel=label,
                      title=f"{longest}x the training length", train_length=train_frames)

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
  for name in methods:
    for ax, field, scale in ((axes[0], "colour_error", 1.0), (axes[1], "seconds_per_frame", 1e3)):
      mean = [summary[f"{name} @ {n}x"][field]["mean"] * scale for n in lengths]
      std = [summary[f"{name} @ {n}x"][field]["std"] * scale for n in lengths]
      ax.errorbar(lengths, mean, yerr=std, marker="o", capsize=3, label=name)
  axes[0].set(xscale="log", xlabel="clip length (x training length)", ylabel="colour error",
              title="quality vs length")
  axes[1].set(xscale="log", yscale="log", xlabel="clip length (x training length)",
              ylabel="ms per frame", title="speed vs length")
  for ax in axes:
    ax.set_xticks(lengths, [str(n) for n in lengths])
  axes[1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  fig.savefig(os.path.join(out, "quality_speed_vs_length.png"))
  plt.close(fig)

  # Frame grid: the first prompt, first seed, longest clip; 8 frames evenly spaced per method.
  fig, axes = plt.subplots(len(methods), 8, figsize=(8 * 1.1, len(methods) * 1.2), dpi=100)
  axes = np.atleast_2d(axes)
  for row, name in zip(axes, methods):
    video = next(r["video"] for r in results[(name, longest)] if r["video"] is not None)
    picks = np.linspace(0, len(video) - 1, 8).round().astype(int)
    for ax, t in zip(row, picks):
      ax.imshow(video[t])
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"t={t}", fontsize=6)
    row[0].set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
  fig.tight_layout()
  fig.savefig(os.path.join(out, "frames.png"))
  plt.close(fig)

  gates = learnedness_gate(evaluation, gate)
  failed = {v for v, g in gates.items() if g["passed"] is False}
  marked = {k: dict(e, method=e["method"] + (" (not learned)" if e["method"].split(":")[0] in
                                             failed else "")) for k, e in summary.items()}
  table = gate_table(gates, gate) + "\n" + markdown_table(marked)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table)
  write_json(os.path.join(out, "results.json"), dict(
      summary=summary, gate=gates, gate_threshold=gate, args=args, git_commit=git_commit(),
      config=json.loads(evaluation["config"].to_json()), context_noise=CONTEXT_NOISE))
  return summary


def run_parser(name: str, *, lengths: str, description: str) -> argparse.ArgumentParser:
  """The options of an experiment that trains denoiser variants and scores their rollouts
  (this one and experiments/temporal_ablations.py); `name` picks the default dirs."""
  parser = argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", default="small", choices=("small", "tiny"))
  parser.add_argument("--workdir", default="", help=f"default: workdirs/{name}_<size>")
  parser.add_argument("--base-workdir", default="",
                      help="reuse this workdir's tokenizer, VAE and data (e.g. the spine's)")
  parser.add_argument("--prompts", type=int, default=8)
  parser.add_argument("--seeds", default="0,1,2", help="sampling seeds")
  parser.add_argument("--train-seeds", default="0,1",
                      help="training seeds per variant (means and stds are over both kinds)")
  parser.add_argument("--gate", type=float, default=0.8,
                      help="direction accuracy at 1x in its native mode a model needs to be "
                           "compared")
  parser.add_argument("--lengths", default=lengths, help="multiples of the training length")
  parser.add_argument("--steps", type=int, default=None, help="sampling steps (model default)")
  parser.add_argument("--out", default=f"experiments/results/{name}")
  parser.set_defaults(name=name)
  return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, *, config_path: str = CONFIG,
        variants: tuple[str, ...] = VARIANTS, methods: tuple[Method, ...] = METHODS) -> int:
  """Checks run_parser's options, trains (or reuses) the variants, scores, writes, prints."""
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
    train_seeds = [int(s) for s in args.train_seeds.split(",")]
    lengths = [int(n) for n in args.lengths.split(",")]
  except ValueError:
    parser.error(f"--seeds {args.seeds!r}, --train-seeds {args.train_seeds!r} and --lengths "
                 f"{args.lengths!r}: comma-separated integers")
  if args.prompts < 1 or not seeds or not train_seeds or min(lengths) < 1 or min(train_seeds) < 0:
    parser.error("--prompts must be >= 1, --seeds and --train-seeds non-empty (>= 0), "
                 "--lengths >= 1")
  if not 0.0 <= args.gate <= 1.0:
    parser.error(f"--gate {args.gate}: a fraction in [0, 1]")
  workdir = args.workdir or f"workdirs/{args.name}_{args.size}"
  models = train_variants(args.size, workdir, args.base_workdir, config_path=config_path,
                          variants=variants, train_seeds=train_seeds)
  evaluation = evaluate(models, prompts=args.prompts, seeds=seeds, lengths=lengths,
                        steps=args.steps, methods=methods)
  write_outputs(evaluation, args.out, args=vars(args), gate=args.gate)
  print(gate_table(learnedness_gate(evaluation, args.gate), args.gate))
  print(markdown_table(summarize(evaluation)))
  print(f"wrote {args.out}/")
  return 0


def main(argv=None) -> int:
  parser = run_parser("parallel_vs_ar", lengths="1,2,4,8", description=__doc__)
  return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
  raise SystemExit(main())
