"""Temporal consistency measured against exact ground truth: does an object stay itself, does
the static background stay still, and do pixels move the way the true flow says?

All per-frame values are returned alongside their means so `drift` can plot them against the
frame index. Pixel values are compared on a [0, 1] scale.
"""
from __future__ import annotations

import numpy as np

# Euclidean RGB distance of black to white, so colour change lies in [0, 1].
_MAX_RGB_DISTANCE = 255.0 * np.sqrt(3.0)


def _to_unit(video) -> np.ndarray:
  video = np.asarray(video)
  return video.astype(np.float64) / 255.0 if video.dtype == np.uint8 else video.astype(np.float64)


def _aligned_iou(ref: np.ndarray, mask: np.ndarray) -> float:
  """IoU of bool [H, W] masks after moving `mask`'s centroid onto `ref`'s and scaling it to
  `ref`'s area (nearest-neighbour resampling): what is left is a change of shape (or turn)."""
  ry, rx = np.nonzero(ref)
  my, mx = np.nonzero(mask)
  scale = np.sqrt(len(mx) / len(rx))
  h, w = ref.shape
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  # Each pixel of ref's frame asks whether its counterpart in mask's frame is inside mask.
  sx = np.round(mx.mean() + (xs - rx.mean()) * scale).astype(np.int64)
  sy = np.round(my.mean() + (ys - ry.mean()) * scale).astype(np.int64)
  inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  moved = inside & mask[np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)]
  return float((moved & ref).sum() / max((moved | ref).sum(), 1))


def identity_persistence(video, mask) -> dict:
  """How much one object's colour, size and shape change from its first detected frame.

  Args:
    video: uint8 [T, H, W, 3] (or float in [0, 1]).
    mask: bool [T, H, W], the object's pixels per frame (e.g. `adherence.detect_object(video)
      ['mask']` on a generated clip, or the ground-truth segmentation == k + 1).
  Returns:
    dict of per-frame float64 [T] arrays (nan where the object is missing) and their means:
      color_change: distance of the frame's median object colour from frame 0's, in [0, 1];
      size_change: |log(area_t / area_0)| (0.69 means halved or doubled);
      shape_change: 1 - IoU with frame 0's mask after aligning centroid and area, so motion
        and uniform scaling are free but a changed outline is not (a turn counts as a change);
      found: bool [T]; and color, size, shape (means over found frames), missing (fraction of
      frames without the object).
  """
  pixels = _to_unit(video)
  mask = np.asarray(mask, bool)
  if pixels.ndim != 4 or mask.shape != pixels.shape[:3]:
    raise ValueError(f"video [T, H, W, C] and mask [T, H, W] disagree: {pixels.shape}, "
                     f"{mask.shape}")
  frames = len(mask)
  area = mask.sum(axis=(1, 2))
  found = area > 0
  color = np.full(frames, np.nan)
  size = np.full(frames, np.nan)
  shape = np.full(frames, np.nan)
  if found.any():
    ref = int(np.argmax(found))
    # Medians, not means: a blurred rim mixes object and background colours.
    rgb = [np.median(pixels[t][mask[t]], axis=0) if found[t] else None for t in range(frames)]
    for t in np.nonzero(found)[0]:
      color[t] = np.linalg.norm(rgb[t] - rgb[ref]) * 255.0 / _MAX_RGB_DISTANCE
      size[t] = abs(np.log(area[t] / area[ref]))
      shape[t] = 1.0 - _aligned_iou(mask[ref], mask[t])
  mean = lambda x: float(np.nanmean(x)) if found.any() else float("nan")
  return dict(color_change=color, size_change=size, shape_change=shape, found=found,
              color=mean(color), size=mean(size), shape=mean(shape),
              missing=float(1.0 - found.mean()))


def static_mask(flow, segmentation) -> np.ndarray:
  """Pixels the ground truth says do not change between frames t and t + 1.

  Args:
    flow: float [T-1, H, W, 2] exact forward flow (`scenes.optical_flow`).
    segmentation: int [T, H, W] (0 background, k + 1 object k on top).
  Returns:
    bool [T-1, H, W]: the surface point stays put (zero flow) and nothing moves over it (same
    label at t + 1). A panning or zooming camera leaves no static pixels, which is right: there
    flicker is measured by `warping_error` instead.
  """
  flow = np.asarray(flow)
  seg = np.asarray(segmentation)
  return (np.abs(flow).max(axis=-1) == 0) & (seg[:-1] == seg[1:])


def flicker(video, static) -> dict:
  """Mean absolute frame-to-frame change of the pixels the ground truth says are static.

  Args:
    video: uint8 [T, H, W, C] (or float in [0, 1]).
    static: bool [T-1, H, W] (`static_mask`).
  Returns:
    dict(per_frame float64 [T-1] (nan where nothing is static), mean float) on a [0, 1] scale:
    exactly 0 for a clip that reproduces the static pixels.
  """
  pixels = _to_unit(video)
  static = np.asarray(static, bool)
  if static.shape != (len(pixels) - 1,) + pixels.shape[1:3]:
    raise ValueError(f"static must be [T-1, H, W] for video {pixels.shape}, got {static.shape}")
  change = np.abs(np.diff(pixels, axis=0)).mean(axis=-1)  # [T-1, H, W]
  count = static.sum(axis=(1, 2))
  with np.errstate(invalid="ignore"):
    per_frame = (change * static).sum(axis=(1, 2)) / count
  return dict(per_frame=per_frame, mean=_nanmean(per_frame))


def warping_error(video, flow, segmentation) -> dict:
  """Error of predicting frame t + 1 by moving frame t's pixels along the exact flow.

  Each pixel p of frame t is compared with frame t + 1 at round(p + flow(p)) (nearest, because
  the ground truth is rendered without anti-aliasing), counted only where that target is
  inside the frame and shows the same surface (same segmentation label, so occluded and
  disoccluded pixels are skipped).

  Args:
    video: uint8 [T, H, W, C] (or float in [0, 1]).
    flow: float [T-1, H, W, 2] (dx, dy), e.g. `scenes.optical_flow(truth)`.
    segmentation: int [T, H, W] ground-truth labels (0 background, k + 1 object k).
  Returns:
    dict(per_frame float64 [T-1] mean absolute error on [0, 1], visible float64 [T-1] fraction
    of pixels counted, mean float). Ground truth with flat colours scores exactly 0.
  """
  pixels = _to_unit(video)
  flow = np.asarray(flow, np.float64)
  seg = np.asarray(segmentation)
  frames, h, w = pixels.shape[:3]
  if flow.shape != (frames - 1, h, w, 2) or seg.shape != (frames, h, w):
    raise ValueError(f"flow must be [T-1, H, W, 2] and segmentation [T, H, W] for video "
                     f"{pixels.shape}; got {flow.shape}, {seg.shape}")
  ys, xs = np.mgrid[0:h, 0:w]
  per_frame = np.full(frames - 1, np.nan)
  visible = np.zeros(frames - 1)
  for t in range(frames - 1):
    tx = np.round(xs + flow[t, ..., 0]).astype(np.int64)
    ty = np.round(ys + flow[t, ..., 1]).astype(np.int64)
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    tx, ty = np.clip(tx, 0, w - 1), np.clip(ty, 0, h - 1)
    ok = inside & (seg[t + 1][ty, tx] == seg[t])
    visible[t] = ok.mean()
    if ok.any():
      err = np.abs(pixels[t + 1][ty, tx] - pixels[t]).mean(axis=-1)
      per_frame[t] = err[ok].mean()
  return dict(per_frame=per_frame, visible=visible, mean=_nanmean(per_frame))


def _nanmean(x: np.ndarray) -> float:
  return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
