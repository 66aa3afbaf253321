"""`vdm eval adherence`: does the model draw what the prompt says?

Samples test-split prompts (compositions held out of training), then judges each video from its
pixels alone (`vdm.eval.adherence`): the dominant object colour and the direction its centroid moves.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm

from vdm.data import synthetic
from vdm.eval.adherence import score, summarize
from vdm.video_io import write_json


def run_adherence(checkpoint: str, *, num: int = 48, seed: int = 0, out: str = "",
                  steps: int | None = None, guidance: float | None = None) -> dict:
  """Scores `num` test prompts; writes JSON and a markdown table next to `out`; returns summary."""
  from vdm.generate.pipeline import Pipeline
  from vdm.train.run import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  d = pipe.config.data
  examples = synthetic.generate_examples(d.seed, "test", num, d.height, d.width, d.frames)
  rows = []
  for i, (_, example) in enumerate(tqdm(examples, total=num, desc="adherence")):
    frames = pipe(example["caption"], seed=seed + i, steps=steps, guidance=guidance,
                  seconds=d.frames / d.fps, fps=d.fps, resolution=min(d.height, d.width))
    result = score(frames, int(example["color"]), int(example["direction"]))
    rows.append(dict(caption=example["caption"], **{k: (v.item() if hasattr(v, "item") else v)
                                                    for k, v in result.items()}))
  summary = summarize(rows)
  report = dict(summary=summary, checkpoint=os.path.abspath(checkpoint), seed=seed,
                steps=steps or pipe.config.sample.steps,
                guidance=pipe.config.sample.guidance if guidance is None else guidance,
                git_commit=git_commit(), rows=rows)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_json(out, report)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
      f.write("| metric | value |\n|---|---|\n")
      for key, value in summary.items():
        f.write(f"| {key} | {value:.3f} |\n" if isinstance(value, float) else
                f"| {key} | {value} |\n")
  print(f"adherence over {summary['n']} test prompts: colour {summary['color_accuracy']:.1%}, "
        f"direction {summary['direction_accuracy']:.1%}")
  return report
