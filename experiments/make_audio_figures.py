"""The audio experiment's table and waveform/onset alignment figure (experiments/audio/README.md).

Reads the `vdm eval av-sync` reports of the joint model and of the baseline without video
attention, and samples a few held-out prompts with both models to draw, per clip, the object's
path with its visible bounces and the soundtrack with its clicks.

    python experiments/make_audio_figures.py --joint workdirs/audio/model \
        --baseline workdirs/audio_no_video_attention/model \
        --joint-report outputs/av_sync_joint.json --baseline-report outputs/av_sync_baseline.json \
        --out experiments/results/audio
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = (("ground truth (test clips' own sound)", "joint", "ground_truth"),
        ("joint model: frames and sound generated together", "joint", "generated"),
        ("joint model: sound generated for the true frames", "joint", "audio_for_true_video"),
        ("baseline without video attention: generated together", "baseline", "generated"),
        ("baseline without video attention: sound for the true frames", "baseline",
         "audio_for_true_video"),
        ("random training-set sound with the joint model's frames", "joint",
         "random_training_audio"))


def table(reports: dict, fps: int) -> str:
  lines = ["| clips | median onset error (ms) | bounces missed | pitch-to-colour | silence when "
           "still | median abs A/V offset (ms) |", "|---|---|---|---|---|---|"]
  for label, model, row in ROWS:
    if model not in reports:
      continue
    s = reports[model]["summary"][row]
    lines.append(f"| {label} | {s['median_onset_error_ms']:.0f} | {s['missed']:.0%} | "
                 f"{s['pitch_accuracy']:.0%} | {s['silence_when_still']:.0%} | "
                 f"{s['median_abs_offset_ms']:.0f} |")
  n = next(iter(reports.values()))["num"]
  lines.append(f"\n{n} held-out test prompts; one video frame = {1000 / fps:.0f} ms.")
  return "\n".join(lines) + "\n"


def alignment_figure(models: dict, path: str, *, clips: int, seed: int, steps: int | None):
  """Per clip (rows) and source (columns): the object's x and y over time with its visible
  bounces (dashed) above the waveform with its detected clicks (red)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from vdm.data import scenes, soundtrack
  from vdm.eval import av_sync
  from vdm.generate.pipeline import Pipeline
  pipes = {name: Pipeline.load(d) for name, d in models.items()}
  first = next(iter(pipes.values()))
  d = first.config.data
  tests = [e for e in av_sync.dataset_examples(first.config, "test", 40)
           if (e["event_frame"] >= 0).sum() >= 2][:clips]
  columns = ["ground truth"] + list(pipes)
  fig, axes = plt.subplots(2 * len(tests), len(columns), figsize=(4 * len(columns),
                                                                  3.2 * len(tests)),
                           squeeze=False, gridspec_kw=dict(height_ratios=[1, 1] * len(tests)))
  for i, example in enumerate(tests):
    for j, name in enumerate(columns):
      if name == "ground truth":
        frames, audio = example["video"], soundtrack.from_pcm16(example["audio"])
        threshold = None
      else:
        frames, audio = pipes[name](example["caption"], seed=seed + i, steps=steps, audio=True,
                                    seconds=d.frames / d.fps)
        threshold = av_sync.GENERATED_CLICK_THRESHOLD
      score = av_sync.score_clip(frames, audio, d.sample_rate, d.fps,
                                 **({} if threshold is None else dict(click_threshold=threshold)))
      tracks = av_sync.track_objects(frames)
      top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
      t_frames = np.arange(len(frames)) / d.fps
      for color, center in tracks.items():
        rgb = np.asarray(scenes.PALETTE[color]) / 255.0
        top.plot(t_frames, center[:, 0], "-o", ms=2, color=rgb, label="x")
        top.plot(t_frames, center[:, 1], "--o", ms=2, color=rgb, label="y")
      for e in score["event_ms"]:
        top.axvline(e / 1000, color="k", ls=":", lw=1)
        bottom.axvline(e / 1000, color="k", ls=":", lw=1)
      t_audio = np.arange(len(audio)) / d.sample_rate
      bottom.plot(t_audio, audio, lw=0.3, color="0.3")
      for o in score["onset_ms"]:
        bottom.axvline(o / 1000, color="r", lw=1)
      top.set_title(f"{name}" + (f"\n{example['caption'][:48]}" if j == 0 else ""), fontsize=7)
      top.set_ylabel("px", fontsize=7)
      bottom.set_ylim(-0.6, 0.6)
      bottom.set_xlabel("s (dotted: visible bounces, red: clicks)", fontsize=7)
      for ax in (top, bottom):
        ax.tick_params(labelsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--joint", required=True, help="the joint model directory")
  parser.add_argument("--baseline", default="", help="the model without video attention")
  parser.add_argument("--joint-report", required=True, help="its `vdm eval av-sync` JSON")
  parser.add_argument("--baseline-report", default="", help="the baseline's av-sync JSON")
  parser.add_argument("--clips", type=int, default=3, help="clips in the figure")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--out", default="experiments/results/audio")
  args = parser.parse_args(argv)
  from vdm.provenance import git_commit, write_json
  os.makedirs(args.out, exist_ok=True)
  reports = {"joint": json.load(open(args.joint_report))}
  if args.baseline_report:
    reports["baseline"] = json.load(open(args.baseline_report))
  with open(os.path.join(args.joint, "config.json")) as f:
    fps = json.load(f)["data"]["fps"]
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write(table(reports, fps=fps))
  write_json(os.path.join(args.out, "results.json"), dict(
      summaries={k: r["summary"] for k, r in reports.items()}, git_commit=git_commit(),
      reports=dict(joint=args.joint_report, baseline=args.baseline_report)))
  models = {"joint": args.joint}
  if args.baseline:
    models["without video attention"] = args.baseline
  alignment_figure(models, os.path.join(args.out, "alignment.png"), clips=args.clips,
                   seed=args.seed, steps=args.steps)
  print(open(os.path.join(args.out, "table.md")).read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
