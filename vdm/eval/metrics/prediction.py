"""Moving-MNIST 10 -> 10 prediction scored as the video-prediction literature does.

Frames are grey on [0, 1]; MSE is per frame *summed over pixels* (64 x 64), averaged over the
predicted frames and clips, and SSIM is the Gaussian-window SSIM of `image.ssim` averaged the
same way: the convention of the OpenSTL benchmark, where the SimVP and TAU figures come from.
(The ConvLSTM and PredRNN figures were reported by their authors; PredRNN's code used
skimage's then-default 7x7 uniform-window SSIM, so the SSIM column is only roughly comparable.)
Our test clips come from `vdm.data.moving_mnist`'s generator, not the fixed public test file,
and a stochastic sampler is scored both per sample and best-of-k.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from vdm.eval.metrics import image

# Published Moving-MNIST 10 -> 10 results: MSE per frame (summed over pixels), SSIM.
PUBLISHED = {
    "ConvLSTM": dict(mse=103.3, ssim=0.707),
    "PredRNN": dict(mse=56.8, ssim=0.867),
    "SimVP": dict(mse=23.8, ssim=0.948),
    "TAU": dict(mse=19.8, ssim=0.957),
}


def _grey_unit(video) -> np.ndarray:
  """[..., T, H, W] or [..., T, H, W, C] (uint8 or [0, 1] float) -> float32 [..., T, H, W, 1]."""
  v = np.asarray(video)
  if v.dtype == np.uint8:
    v = v.astype(np.float32) / 255.0
  v = v.astype(np.float32)
  if v.shape[-1] in (1, 3) and v.ndim >= 4:
    # Our Moving-MNIST frames are grey repeated as RGB; summing three equal channels would
    # triple the MSE.
    return v.mean(axis=-1, keepdims=True)
  return v[..., None]


def prediction_scores(pred, true) -> dict:
  """Scores predicted frames against the true continuation.

  Args:
    pred, true: [B, T, H, W] or [B, T, H, W, C] (uint8, or float on [0, 1]); only the
      predicted frames (10 for the 10 -> 10 task), not the given ones.
  Returns:
    dict(mse float, ssim float, mse_per_frame float64 [T], ssim_per_frame [T],
    mse_per_clip [B], ssim_per_clip [B]).
  """
  p, g = _grey_unit(pred), _grey_unit(true)
  if p.shape != g.shape or p.ndim != 5:
    raise ValueError(f"pred and true must share a [B, T, H, W(, C)] shape, got "
                     f"{np.shape(pred)} vs {np.shape(true)}")
  mse = ((p.astype(np.float64) - g) ** 2).sum(axis=(2, 3, 4))  # [B, T]
  ssim = np.asarray(image.ssim(p, g, data_range=1.0), np.float64)  # [B, T]
  return dict(mse=float(mse.mean()), ssim=float(ssim.mean()),
              mse_per_frame=mse.mean(axis=0), ssim_per_frame=ssim.mean(axis=0),
              mse_per_clip=mse.mean(axis=1), ssim_per_clip=ssim.mean(axis=1))


def best_of_k_scores(samples, true) -> dict:
  """Best-of-k: for each clip keep the sample of K with the lowest MSE.

  Args:
    samples: [K, B, T, H, W(, C)] K predictions per clip; true: [B, T, H, W(, C)].
  Returns:
    dict(mse, ssim) of the chosen samples, per_sample (mse, ssim averaged over all K samples),
    choice int [B] (index of the chosen sample per clip) and samples (each sample's own
    `prediction_scores`, K dicts).
  """
  samples = np.asarray(samples)
  per = [prediction_scores(s, true) for s in samples]
  mse = np.stack([s["mse_per_clip"] for s in per])  # [K, B]
  ssim = np.stack([s["ssim_per_clip"] for s in per])
  choice = np.argmin(mse, axis=0)
  cols = np.arange(mse.shape[1])
  return dict(mse=float(mse[choice, cols].mean()), ssim=float(ssim[choice, cols].mean()),
              per_sample=dict(mse=float(mse.mean()), ssim=float(ssim.mean())), choice=choice,
              samples=per)


def markdown_table(ours: Mapping[str, Mapping[str, float]],
                   published: Mapping[str, Mapping[str, float]] = PUBLISHED) -> str:
  """A markdown table of our rows (name -> dict(mse, ssim)) under the published figures.

  Lower MSE and higher SSIM are better; our rows are marked so the two sources never mix.
  """
  lines = ["| method | MSE / frame ↓ | SSIM ↑ | source |", "|---|---|---|---|"]
  for name, s in published.items():
    lines.append(f"| {name} | {s['mse']:.1f} | {s['ssim']:.3f} | published |")
  for name, s in ours.items():
    lines.append(f"| {name} | {s['mse']:.1f} | {s['ssim']:.3f} | ours (generated test set) |")
  return "\n".join(lines) + "\n"
