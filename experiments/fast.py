"""Few-step students and Self-Forcing against their teacher (issue #19).

    python -m experiments.fast --train               # trains what is missing, then evaluates
    python -m experiments.fast --parts quality,drift # evaluates trained students only

Students are `vdm train --config configs/fast.py:VARIANT` runs in WORKDIR/VARIANT (default
workdirs/fast) from the teacher (default checkpoints/spine_forcing). Parts:
  quality   teacher and students at 1, 2, 4, 8, 25 steps (each where it applies) on held-out
            test prompts: adherence (colour, direction), colour error, background flicker, and
            FVD with the Kinetics-400 I3D against as many real test clips as generated ones;
  guidance  the guidance-distilled student against the teacher's classifier-free guidance at
            scales 2, 4, 6 from the same noise: relative latent distance and the scores above;
  drift     autoregressive rollouts at 1x, 4x, 8x the training length: the teacher (25 and 4
            steps), the Self-Forcing students, and the equal-compute baselines (Diffusion
            Forcing and teacher forcing continued);
  cost      each student's training steps, seconds and frame-forward count.
Every score is the mean over prompts per sampling seed, then mean +- std over seeds. Writes
experiments/results/fast/: results.json (per-seed values, arguments, git commit), tables and
plots.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
from tqdm.auto import tqdm

from configs.fast import STARTS_FROM
from vdm.data import simple
from vdm.eval.adherence import score as adherence_score
from vdm.eval.metrics.drift import curve, plot_drift_curves
from vdm.eval.rollout import sample_and_score, summarize_rows
from vdm.provenance import git_commit, write_json

PARTS = ("quality", "guidance", "drift", "cost")
# variant -> steps it is sampled at in the quality part (the teacher: every count).
QUALITY = {"teacher": (1, 2, 4, 8, 25), "ode_init": (1, 2, 4), "dmd": (1, 2, 4),
           "shortcut": (1, 2, 4, 8, 25), "guidance": (8, 25)}
# (name, variant, steps, context noise): the autoregressive methods of the drift part.
DRIFT = (("teacher 25 steps", "teacher", 25, 0.0), ("teacher 4 steps", "teacher", 4, 0.0),
         ("DF finetune 25 steps", "finetune", 25, 0.0),
         ("TF finetune 25 steps", "finetune_tf", 25, 0.0),
         ("ode_init_ar 4 steps", "ode_init_ar", 4, 0.0),
         ("self_forcing 4 steps", "self_forcing", 4, 0.0),
         ("self_forcing_long 4 steps", "self_forcing_long", 4, 0.0))
TRAIN_ORDER = ("ode_init", "dmd", "guidance", "shortcut", "ode_init_ar", "self_forcing",
               "self_forcing_long", "finetune", "finetune_tf")


def model_dirs(teacher: str, workdir: str) -> dict[str, str]:
  """variant -> model directory, for the teacher and every student that has been trained."""
  dirs = {"teacher": teacher}
  for variant in TRAIN_ORDER:
    path = os.path.join(workdir, variant, "model")
    if os.path.exists(os.path.join(path, "config.json")):
      dirs[variant] = path
  return dirs


def train_missing(teacher: str, workdir: str, data_dir: str, variants) -> None:
  """Trains each variant whose model is missing, in TRAIN_ORDER (students that start from
  another find it under workdir)."""
  from vdm.config import load_config
  from vdm.train.run import run_training
  for variant in TRAIN_ORDER:
    if variant not in variants or os.path.exists(os.path.join(workdir, variant, "model")):
      continue
    sets = [f"teacher='{teacher}'", f"data_dir='{os.path.abspath(data_dir)}'"]
    if variant in STARTS_FROM:
      sets.append(f"init_from='{os.path.join(workdir, STARTS_FROM[variant], 'model')}'")
    run_training(load_config(f"configs/fast.py:{variant}", sets),
                 os.path.join(workdir, variant))


def _examples(pipe, num: int) -> list[dict]:
  d = pipe.config.data
  return [e for _, e in simple.generate_examples(d.seed, "test", num, d.height, d.width,
                                                 d.frames)]


def _summary(values: dict) -> dict:
  """seed -> list of values -> dict(mean, std, per_seed) over the seeds' means."""
  per_seed = [float(np.nanmean(v)) for _, v in sorted(values.items())]
  return dict(mean=float(np.mean(per_seed)), std=float(np.std(per_seed)), per_seed=per_seed)


def quality(pipes: dict, *, prompts: int, seeds: list[int], fvd: bool, guidance=None,
            only_steps=None) -> dict:
  """'variant @ N steps' -> scores (mean, std, per_seed) and the clips' I3D features; only_steps:
  the step counts to run (None: each variant's QUALITY)."""
  examples = _examples(pipes["teacher"], prompts)
  d = pipes["teacher"].config.data
  out = {}
  todo = [(v, s) for v, steps in QUALITY.items() if v in pipes for s in steps
          if only_steps is None or s in only_steps]
  with tqdm(total=len(todo) * len(seeds) * prompts, desc="quality") as bar:
    for variant, steps in todo:
      pipe = pipes[variant]
      scores = {k: {} for k in ("color_ok", "direction_ok", "colour_error", "flicker")}
      videos = {}
      for seed in seeds:
        for k in scores:
          scores[k][seed] = []
        videos[seed] = []
        for i, example in enumerate(examples):
          options = dict(steps=steps, seed=seed * 10_000 + i, seconds=d.frames / d.fps,
                         fps=d.fps, resolution=min(d.height, d.width))
          if guidance is not None and variant in ("teacher", "guidance"):
            options["guidance"] = guidance
          video = pipe(example["caption"], **options)
          judged = adherence_score(video, int(example["color"]), int(example["direction"]))
          rows = sample_scores(video, example)
          scores["color_ok"][seed].append(float(judged["color_ok"]))
          scores["direction_ok"][seed].append(float(judged["direction_ok"]))
          scores["colour_error"][seed].append(rows["colour_error"])
          scores["flicker"][seed].append(rows["flicker"])
          videos[seed].append(video)
          bar.update()
      entry = {k: _summary(v) for k, v in scores.items()}
      entry.update(variant=variant, steps=steps, videos=videos)
      out[f"{variant} @ {steps}"] = entry
  if fvd:
    add_fvd(out, examples, seeds)
  return out


def sample_scores(video, example) -> dict:
  from vdm.eval.metrics.rollout import frame_scores
  s = frame_scores(video, int(example["color"]), int(example["background"]))
  return dict(colour_error=float(np.mean(s["colour_error"])),
              flicker=float(np.nanmean(s["flicker"])))


def add_fvd(out: dict, examples: list[dict], seeds: list[int]) -> None:
  """FVD per seed: the seed's generated clips against the same number of real test clips (the
  prompts' own), and over all seeds pooled against as many real clips."""
  from vdm.eval.metrics.fvd import frechet_distance_of_features, i3d_feature_fn
  features = i3d_feature_fn()
  n = len(examples)
  d = examples[0]["video"].shape
  real_examples = [e for _, e in simple.generate_examples(0, "test", n * len(seeds), d[1],
                                                          d[2], d[0])]
  real = features(np.stack([e["video"] for e in real_examples]))
  for entry in tqdm(out.values(), desc="FVD"):
    per = {}
    pooled = []
    for j, seed in enumerate(seeds):
      f = features(np.stack(entry["videos"][seed]))
      pooled.append(f)
      per[seed] = [frechet_distance_of_features(f, real[j * n:(j + 1) * n])]
    entry["fvd"] = _summary(per)
    entry["fvd_pooled"] = frechet_distance_of_features(np.concatenate(pooled), real)


def guidance_part(pipes: dict, *, prompts: int, seeds: list[int], scales=(2.0, 4.0, 6.0)):
  """Student at scale s vs the teacher's CFG at s, from the same noise: relative L2 distance
  of the clips (in [0, 1] pixels) and of independent teacher clips (different noise) for scale,
  plus colour accuracy and colour error of both."""
  examples = _examples(pipes["teacher"], prompts)
  d = pipes["teacher"].config.data
  out = {}
  for s in scales:
    dist, base = {}, {}
    for seed in seeds:
      dist[seed], base[seed] = [], []
      for i, example in enumerate(examples):
        options = dict(seconds=d.frames / d.fps, fps=d.fps, resolution=min(d.height, d.width),
                       guidance=s)
        t = pipes["teacher"](example["caption"], seed=seed * 10_000 + i, **options) / 255.0
        g = pipes["guidance"](example["caption"], seed=seed * 10_000 + i, **options) / 255.0
        other = pipes["teacher"](example["caption"], seed=seed * 10_000 + i + 5000,
                                 **options) / 255.0
        dist[seed].append(float(np.linalg.norm(g - t) / np.linalg.norm(t)))
        base[seed].append(float(np.linalg.norm(other - t) / np.linalg.norm(t)))
    out[str(s)] = dict(student_vs_teacher=_summary(dist), teacher_vs_teacher=_summary(base))
    scores = quality({"teacher": pipes["teacher"], "guidance": pipes["guidance"]},
                     prompts=prompts, seeds=seeds, fvd=False, guidance=s, only_steps=(25,))
    for key, entry in scores.items():
      out[str(s)][key] = {k: v for k, v in entry.items() if k != "videos"}
  return out


def drift(pipes: dict, *, prompts: int, seeds: list[int], lengths: list[int]) -> dict:
  """'name @ Lx' -> rollout scores (vdm.eval.rollout) of each autoregressive method."""
  examples = _examples(pipes["teacher"], prompts)
  d = pipes["teacher"].config.data
  out = {}
  for name, variant, steps, noise in DRIFT:
    if variant not in pipes:
      continue
    pipe = pipes[variant]
    pipe.config.sample.max_frames = max(pipe.config.sample.max_frames,
                                        1 + (d.frames - 1) * max(lengths))
    for length in lengths:
      rows = sample_and_score(pipe, examples, frames=1 + (d.frames - 1) * length, seeds=seeds,
                              train_frames=d.frames, fps=d.fps,
                              resolution=min(d.height, d.width), mode="autoregressive",
                              chunk=1, context_noise=noise, steps=steps)
      out[f"{name} @ {length}x"] = dict(name=name, length=length, rows=rows,
                                        **summarize_rows(rows))
  return out


def cost(workdir: str, dirs: dict) -> dict:
  """variant -> steps, batch, seconds of training (metrics.jsonl) and frame-forward passes."""
  from vdm.config import config_from_json
  out = {}
  for variant, model_dir in dirs.items():
    if variant == "teacher":
      continue
    with open(os.path.join(workdir, variant, "config.json")) as f:
      config = config_from_json(f.read())
    with open(os.path.join(workdir, variant, config.recipe, "metrics.jsonl")) as f:
      last = [json.loads(line) for line in f][-1]
    out[variant] = dict(recipe=config.recipe, steps=last["step"],
                        batch=config.train.batch_size, seconds=last["seconds"],
                        frame_forwards=frame_forwards(config, model_dir))
  return out


def frame_forwards(config, model_dir: str) -> float:
  """DiT forward passes of one latent frame the run cost (a backward counts 2): per clip and
  step, times batch and steps; ode_init adds its teacher trajectories."""
  from vdm.models import load_model_dir
  student = load_model_dir(model_dir)[0]
  t = 1 + (student.data.frames - 1) // student.vae.temporal_downsample
  k = config.schedule.steps
  recipe = config.recipe
  per_clip = {"finetune": 3 * t, "ode_init": 3 * t, "guidance": 3 * t + 2 * t,
              "shortcut": 3 * t + 2 * t}.get(recipe)
  if recipe in ("dmd", "self_forcing"):
    rolled = t if recipe == "dmd" else 1 + (t - 1) * config.self_forcing.rollout
    cache = 1 if recipe == "self_forcing" else 0
    per_clip = rolled * ((k - 1) / 2 + 3 + cache) + 2 * t + t + 3 * t
  total = per_clip * config.train.batch_size * config.train.steps
  if recipe == "ode_init":
    total += config.ode.pairs * config.ode.teacher_steps * 2 * t
  return float(total)


def write_outputs(results: dict, out: str, args: dict) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(out, exist_ok=True)
  lines = []
  if "quality" in results:
    q = results["quality"]
    lines += ["## Quality vs steps", "", "| model | steps | colour right | direction right | "
              "colour error | background flicker | FVD (per seed) | FVD (pooled) |",
              "|---|---|---|---|---|---|---|---|"]
    for e in q.values():
      def cell(k, fmt="{:.3f}"):
        return f"{fmt.format(e[k]['mean'])} ± {fmt.format(e[k]['std'])}"
      fvd = cell("fvd", "{:.0f}") if "fvd" in e else "-"
      pooled = f"{e['fvd_pooled']:.0f}" if "fvd_pooled" in e else "-"
      lines.append(f"| {e['variant']} | {e['steps']} | {cell('color_ok')} | "
                   f"{cell('direction_ok')} | {cell('colour_error', '{:.4f}')} | "
                   f"{cell('flicker', '{:.4f}')} | {fvd} | {pooled} |")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    for variant in dict.fromkeys(e["variant"] for e in q.values()):
      es = [e for e in q.values() if e["variant"] == variant]
      steps = [e["steps"] for e in es]
      for ax, key in zip(axes, ("color_ok", "colour_error", "fvd")):
        if key in es[0]:
          ax.errorbar(steps, [e[key]["mean"] for e in es], yerr=[e[key]["std"] for e in es],
                      marker="o", capsize=3, label=variant)
    for ax, label in zip(axes, ("colour right (fraction)", "colour error", "FVD (I3D)")):
      ax.set(xscale="log", xlabel="sampling steps", ylabel=label)
      ax.set_xticks([1, 2, 4, 8, 25], ["1", "2", "4", "8", "25"])
    axes[-1].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "quality_vs_steps.png"))
    plt.close(fig)
    for e in q.values():
      e.pop("videos", None)
  if "guidance" in results:
    lines += ["", "## Guidance distillation", "", "| scale | student vs teacher CFG (same "
              "noise) | teacher vs teacher (other noise) | colour right: teacher / student | "
              "colour error: teacher / student |", "|---|---|---|---|---|"]
    for s, e in results["guidance"].items():
      t = e["teacher @ 25"]
      g = e["guidance @ 25"]
      lines.append(
          f"| {s} | {e['student_vs_teacher']['mean']:.3f} ± {e['student_vs_teacher']['std']:.3f}"
          f" | {e['teacher_vs_teacher']['mean']:.3f} ± {e['teacher_vs_teacher']['std']:.3f} | "
          f"{t['color_ok']['mean']:.3f} / {g['color_ok']['mean']:.3f} | "
          f"{t['colour_error']['mean']:.4f} / {g['colour_error']['mean']:.4f} |")
  if "drift" in results:
    dr = results["drift"]
    lines += ["", "## Autoregressive drift", "", "| method | length | object present, prompt "
              "colour | colour error | colour error, last quarter | ms / frame |",
              "|---|---|---|---|---|---|"]
    for e in dr.values():
      lines.append(f"| {e['name']} | {e['length']}x | {e['object_ok']['mean']:.3f} ± "
                   f"{e['object_ok']['std']:.3f} | {e['colour_error']['mean']:.4f} ± "
                   f"{e['colour_error']['std']:.4f} | {e['colour_error_last']['mean']:.4f} ± "
                   f"{e['colour_error_last']['std']:.4f} | "
                   f"{1000 * e['seconds_per_frame']['mean']:.1f} |")
    longest = max(e["length"] for e in dr.values())
    for field in ("colour_error", "object_ok"):
      curves = {e["name"]: curve(np.stack([r[field] for r in e["rows"]]))
                for e in dr.values() if e["length"] == longest}
      plot_drift_curves(curves, os.path.join(out, f"drift_{field}.png"), ylabel=field,
                        title=f"{longest}x the training length",
                        train_length=results["train_frames"])
    for e in dr.values():
      e.pop("rows")
  if "cost" in results:
    lines += ["", "## Training cost", "", "| student | recipe | steps x batch | seconds | "
              "frame-forward passes |", "|---|---|---|---|---|"]
    for v, e in results["cost"].items():
      lines.append(f"| {v} | {e['recipe']} | {e['steps']} x {e['batch']} | {e['seconds']:.0f} "
                   f"| {e['frame_forwards']:.3g} |")
  with open(os.path.join(out, "tables.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  write_json(os.path.join(out, "results.json"), dict(results=results, args=args,
                                                     git_commit=git_commit()))
  print("\n".join(lines))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--teacher", default="checkpoints/spine_forcing")
  parser.add_argument("--workdir", default="workdirs/fast")
  parser.add_argument("--data-dir", default="workdirs/fast/data")
  parser.add_argument("--train", action="store_true", help="train the missing students first")
  parser.add_argument("--variants", default=",".join(TRAIN_ORDER),
                      help="students to train with --train")
  parser.add_argument("--parts", default=",".join(PARTS))
  parser.add_argument("--prompts", type=int, default=16)
  parser.add_argument("--drift-prompts", type=int, default=8)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--lengths", default="1,4,8")
  parser.add_argument("--no-fvd", action="store_true")
  parser.add_argument("--out", default="experiments/results/fast")
  args = parser.parse_args(argv)
  parts = args.parts.split(",")
  variants = args.variants.split(",")
  bad = sorted(set(parts) - set(PARTS)) + sorted(set(variants) - set(TRAIN_ORDER))
  if bad:
    parser.error(f"unknown parts or variants {bad}: allowed parts {PARTS}, variants "
                 f"{TRAIN_ORDER}")
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
    lengths = [int(n) for n in args.lengths.split(",")]
  except ValueError:
    parser.error("--seeds and --lengths: comma-separated integers")
  return run(args, parts, variants, seeds, lengths)


def run(args, parts, variants, seeds, lengths) -> int:
  """Trains (with --train) and evaluates; writes args.out."""
  import vdm
  if args.train:
    train_missing(args.teacher, args.workdir, args.data_dir, variants)
  dirs = model_dirs(args.teacher, args.workdir)
  pipes = {v: vdm.Pipeline.load(d) for v, d in dirs.items()}
  results = dict(models=dirs, train_frames=pipes["teacher"].config.data.frames)
  if "quality" in parts:
    results["quality"] = quality(pipes, prompts=args.prompts, seeds=seeds, fvd=not args.no_fvd)
  if "guidance" in parts and "guidance" in pipes:
    results["guidance"] = guidance_part(pipes, prompts=args.prompts, seeds=seeds)
  if "drift" in parts:
    results["drift"] = drift(pipes, prompts=args.drift_prompts, seeds=seeds, lengths=lengths)
  if "cost" in parts:
    results["cost"] = cost(args.workdir, dirs)
  write_outputs(results, args.out, vars(args))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
