"""`vdm eval --suite prediction`: Moving-MNIST 10 -> 10 video prediction through the extension mode.

Test clips come from `vdm.data.moving_mnist`'s generator (test split: digit images training never
uses; clip i is a function of (data.seed, 'test', i)), not from the fixed public test file the
published figures use. Each clip's first `prediction.given_frames` frames are given, the rest are
generated K times (`vdm.generate.extension`: given latents pinned at level 0) and scored as the
literature does (`vdm.eval.metrics.prediction`: per-frame MSE summed over pixels, SSIM), per
sample (the mean over the K samples) and best-of-K (per clip, the sample with the lowest MSE).
Two trivial predictors go through the same scorer to give the numbers a scale, the last given
frame repeated and black frames, and so does the model's own VAE reconstruction of the true
frames (what a perfect denoiser would still lose to the autoencoder).
"""
from __future__ import annotations

import os
import time

import numpy as np
from tqdm.auto import tqdm

from vdm.data import moving_mnist
from vdm.eval.metrics.prediction import PUBLISHED, best_of_k_scores, prediction_scores

NOTE = ("Our test clips come from this repo's Moving-MNIST generator (test split: digit images "
        "never used in training), not from the fixed public test file (10,000 clips) the "
        "published rows use; published rows are copied from their papers, not rerun here. A "
        "sampler is stochastic: 'per sample' is the mean over the K samples of each clip, "
        "'best of K' keeps each clip's lowest-MSE sample (it sees the answer, so it is an "
        "upper bound, not a predictor). MSE: per frame, summed over the 64x64 pixels on [0, 1]; "
        "SSIM: 11x11 Gaussian window.")


def test_clips(data, num: int) -> np.ndarray:
  """uint8 [num, T, H, W, 3]: clips 0..num-1 of the generator's test split for `config.data`."""
  if not isinstance(num, int) or num < 1:
    raise ValueError(f"--num {num!r} must be an integer >= 1")
  if data.kind != "moving_mnist" or data.height != data.width:
    raise ValueError(f"the prediction suite needs a model trained on square moving_mnist clips "
                     f"(config.data.kind={data.kind!r}, {data.height}x{data.width})")
  return np.stack([moving_mnist.make_example(data.seed, "test", i, size=data.height,
                                             frames=data.frames,
                                             num_digits=data.num_digits)["video"]
                   for i in range(num)])


def baseline_predictions(given: np.ndarray, new_frames: int) -> dict[str, np.ndarray]:
  """Trivial predictors of `new_frames` frames from given clips uint8 [B, G, H, W, 3]:
  name -> uint8 [B, new_frames, H, W, 3]."""
  last = np.repeat(given[:, -1:], new_frames, axis=1)
  return {"copy last given frame": last, "zeros (black frames)": np.zeros_like(last)}


def _row(scores: dict, **extra) -> dict:
  """The JSON row of a scored predictor: scalars and the per-frame curves as lists."""
  row = dict(mse=float(scores["mse"]), ssim=float(scores["ssim"]), **extra)
  for key in ("mse_per_frame", "ssim_per_frame"):
    if key in scores:
      row[key] = [float(x) for x in scores[key]]
  return row


def score_predictions(samples: np.ndarray, given: np.ndarray, true: np.ndarray,
                      reconstructed: np.ndarray | None = None) -> dict:
  """Our rows and the baselines' from K predictions per clip.

  Args:
    samples: uint8 [K, B, P, H, W, 3]; given: [B, G, H, W, 3]; true: [B, P, H, W, 3].
    reconstructed: optional uint8 [B, P, H, W, 3], the VAE's reconstruction of `true` (encoded
      and decoded with the whole clip): roughly the closest a sample of this model can get.
  Returns:
    name -> dict(mse, ssim, mse_per_frame [P], ssim_per_frame [P], ...), in table order.
  """
  k = len(samples)
  best = best_of_k_scores(samples, true)
  per = best["samples"]  # each sample scored once, there
  mean_curve = lambda key: np.mean([p[key] for p in per], axis=0)  # noqa: E731
  rows = {f"vdm extension, per sample (mean of {k})": _row(
              dict(mse=best["per_sample"]["mse"], ssim=best["per_sample"]["ssim"],
                   mse_per_frame=mean_curve("mse_per_frame"),
                   ssim_per_frame=mean_curve("ssim_per_frame")),
              mse_std_over_samples=float(np.std([p["mse"] for p in per])),
              ssim_std_over_samples=float(np.std([p["ssim"] for p in per])))}
  if k > 1:
    rows[f"vdm extension, best of {k}"] = _row(best)
  if reconstructed is not None:
    rows["vdm VAE reconstruction of the true frames"] = _row(
        prediction_scores(reconstructed, true))
  for name, prediction in baseline_predictions(given, true.shape[1]).items():
    rows[name] = _row(prediction_scores(prediction, true))
  return rows


def predict(pipe, clips: np.ndarray, *, given_frames: int, samples: int, seed: int,
            steps: int | None, batch_size: int, progress: bool = True) -> np.ndarray:
  """uint8 [K, N, P, H, W, 3]: K extensions of each clip's first `given_frames` frames, in batches
  of `batch_size` clips (each clip's noise is keyed by its index, so batching changes nothing)."""
  from vdm.generate.extension import extend_clips
  new_frames = clips.shape[1] - given_frames
  parts = []
  for start in tqdm(range(0, len(clips), batch_size), desc="prediction", disable=not progress):
    given = clips[start:start + batch_size, :given_frames]
    parts.append(extend_clips(pipe, given, new_frames, samples=samples, seed=seed, steps=steps,
                              first_index=start))
  return np.concatenate(parts, axis=1)


def reconstruct(pipe, clips: np.ndarray, batch_size: int) -> np.ndarray:
  """uint8 [N, T, H, W, 3]: the model's VAE decoding of its own encoding of each whole clip."""
  from flax import nnx

  from vdm.generate.extension import encode_given
  from vdm.generate.pipeline import decode_latents
  vae_def, vae_state = nnx.split(pipe.vae)
  return np.concatenate([np.asarray(decode_latents(vae_def, vae_state,
                                                   encode_given(pipe, clips[i:i + batch_size]),
                                                   pipe.latent_mean, pipe.latent_std))
                         for i in range(0, len(clips), batch_size)])


def markdown_report(rows: dict, *, num: int, samples: int, steps: int) -> str:
  """The table (published rows, then ours and the baselines) and the note line."""
  from vdm.eval.metrics.prediction import markdown_table
  table = markdown_table(rows, PUBLISHED)
  return (f"Moving-MNIST 10 -> 10, {num} generated test clips, {samples} samples per clip, "
          f"{steps} sampler steps.\n\n{table}\n{NOTE}\n")


def run_prediction(checkpoint: str, *, num: int = 100, samples: int = 4, seed: int = 0,
                   steps: int | None = None, out: str = "", batch_size: int = 8,
                   examples_png: bool = True) -> dict:
  """Runs the suite on a model directory; writes JSON (and .md, and an example strip .png)
  beside `out`; returns the report."""
  from vdm.eval.run import write_report
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if not isinstance(samples, int) or samples < 1:
    raise ValueError(f"--samples {samples!r} must be an integer >= 1")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size {batch_size!r} must be an integer >= 1")
  pipe = Pipeline.load(checkpoint)
  config = pipe.config
  if config.prediction.given_frames == 0:
    raise ValueError(f"--checkpoint {checkpoint!r} is not a video-prediction model "
                     "(prediction.given_frames = 0; train with configs/moving_mnist.py)")
  given_frames = config.prediction.given_frames
  clips = test_clips(config.data, num)
  steps = config.sample.steps if steps is None else steps
  t0 = time.perf_counter()
  predictions = predict(pipe, clips, given_frames=given_frames, samples=samples, seed=seed,
                        steps=steps, batch_size=batch_size)
  seconds = time.perf_counter() - t0
  reconstructed = reconstruct(pipe, clips, batch_size)[:, given_frames:]
  rows = score_predictions(predictions, clips[:, :given_frames], clips[:, given_frames:],
                           reconstructed)
  report = dict(rows=rows, published=PUBLISHED, note=NOTE, num=num, samples=samples, seed=seed,
                steps=steps, sampler=config.sample.sampler, mode="parallel, given frames pinned",
                given_frames=given_frames, predicted_frames=int(clips.shape[1] - given_frames),
                data_seed=config.data.seed, seconds=seconds,
                checkpoint=os.path.abspath(checkpoint), git_commit=git_commit())
  if out and examples_png:
    report["examples"] = write_examples(os.path.splitext(out)[0] + ".png", clips, predictions,
                                        given_frames)
  return write_report(out, report, markdown_report(rows, num=num, samples=samples, steps=steps))


def write_examples(path: str, clips: np.ndarray, predictions: np.ndarray, given_frames: int,
                   num: int = 4) -> str:
  """A PNG strip per clip (first `num`): the true clip above, given + sample 0 below, with a
  grey line after the given frames. Returns the path."""
  import mediapy
  strips = []
  for i in range(min(num, len(clips))):
    true = clips[i]
    ours = np.concatenate([clips[i, :given_frames], predictions[0, i]])
    strip = np.concatenate([np.concatenate(list(v), axis=1) for v in (true, ours)], axis=0)
    strip[:, given_frames * clips.shape[3] - 1] = 128
    strips.append(np.pad(strip, ((0, 4), (0, 0), (0, 0)), constant_values=255))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  mediapy.write_image(path, np.concatenate(strips))
  return path
