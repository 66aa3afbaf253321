"""The DiT's control inputs, built from object paths and a camera path (pure numpy).

The DiT (`vdm.dit.model.DiT`, `control_token_features` / `control_frame_features`) adds

  trajectory tokens  float32 [T', N, stride * stride * td * K] per latent frame and token: for
                     each object slot k and each pixel frame the latent frame stands for, a
                     Gaussian blob of std `sigma` px at the object's requested centre, drawn at
                     pixel resolution and cut into the tokens' stride x stride patches (the
                     token order of `vdm.dit.layers.patchify`). A token sees where in its own
                     patch each object is, to a fraction of a pixel; an object without a path
                     (not given, or dropped in training) is all zeros.
  camera frames      float32 [T', td * 6 + 1] per latent frame (control.camera_input =
                     'frames'): for each of its pixel frames the path (log s, tx / W, ty / H)
                     and the step from the frame before (same three), then 1 (a path is given;
                     all zeros when it is not).
  camera tokens      float32 [T', N, td * 4 + 1] per latent frame and token
                     (control.camera_input = 'tokens'): for each of its pixel frames, where the
                     content at the token's centre was in frame 0 and in the frame before, as
                     offsets in tokens (x, y each), then 1. A pan is the same offset everywhere,
                     a zoom one that grows from the centre: a map the patch embedding reads as it
                     reads the trajectory blobs, where a per-frame vector has to be turned into
                     a displacement field by the network itself.

Latent frame 0 stands for pixel frame 0 (the causal VAE encodes it alone: its td slots repeat
it); latent frame l >= 1 for pixel frames (l - 1) td + 1 .. l td. The slot of object k is its
position in the prompt (and in `vdm.data.scenes`' ground truth).
"""
from __future__ import annotations

import numpy as np


def pixel_frames_of_latents(frames: int, temporal_downsample: int) -> np.ndarray:
  """int [T', td]: the pixel frames each latent frame stands for (frame 0 repeated td times).
  `frames` must be 1 + a multiple of td."""
  td = temporal_downsample
  if frames < 1 or (frames - 1) % td:
    raise ValueError(f"frames must be 1 + a multiple of the VAE's temporal stride {td}, "
                     f"got {frames}")
  later = 1 + np.arange(frames - 1).reshape(-1, td)
  return np.concatenate([np.zeros((1, td), np.int64), later]).astype(np.int64)


def trajectory_feature_size(*, stride: int, temporal_downsample: int, objects: int) -> int:
  return stride * stride * temporal_downsample * objects


def camera_feature_size(*, temporal_downsample: int) -> int:
  return 6 * temporal_downsample + 1


def trajectory_tokens(paths, *, height: int, width: int, stride: int,
                      temporal_downsample: int, objects: int, sigma: float) -> np.ndarray:
  """Blob maps of object paths, as tokens.

  Args:
    paths: float [K, T, 2] requested centres (x, y) in pixels, K <= objects; nan marks an object
      without a path (its slot stays zero).
    height, width: the clip's frame size (multiples of stride); stride: pixels per token side
      (the VAE's spatial downsampling x dit.patch).
    sigma: blob std in pixels.
  Returns:
    float32 [T', (height / stride) * (width / stride), stride * stride * td * objects].
  """
  paths = np.asarray(paths, np.float64)
  k_given, frames = paths.shape[:2]
  if k_given > objects:
    raise ValueError(f"{k_given} object paths for {objects} control slots (control.objects)")
  if height % stride or width % stride:
    raise ValueError(f"frame {height}x{width} is not a multiple of the token stride {stride}")
  groups = pixel_frames_of_latents(frames, temporal_downsample)  # [T', td]
  ys = np.arange(height, dtype=np.float64)[:, None, None]
  xs = np.arange(width, dtype=np.float64)[None, :, None]
  slots = np.zeros((frames, height, width, objects), np.float32)
  given = np.isfinite(paths).all(-1)  # [K, T]
  for k in range(k_given):
    c = np.where(given[k][:, None], paths[k], 0.0)  # [T, 2]
    blob = np.exp(-((xs - c[None, None, :, 0]) ** 2 + (ys - c[None, None, :, 1]) ** 2)
                  / (2.0 * sigma ** 2))  # [H, W, T]
    slots[..., k] = np.where(given[k], blob, 0.0).transpose(2, 0, 1)
  maps = slots[groups]  # [T', td, H, W, K]
  t_lat, td = groups.shape
  rows, cols = height // stride, width // stride
  maps = maps.reshape(t_lat, td, rows, stride, cols, stride, objects)
  # -> [T', rows, cols, py, px, td, K]: the object slot last, so it can be dropped by a mask.
  maps = maps.transpose(0, 2, 4, 3, 5, 1, 6)
  return maps.reshape(t_lat, rows * cols, stride * stride * td * objects).astype(np.float32)


def camera_token_feature_size(*, temporal_downsample: int) -> int:
  return 4 * temporal_downsample + 1


def camera_tokens(path, *, height: int, width: int, stride: int,
                  temporal_downsample: int) -> np.ndarray:
  """Per-token camera displacements float32 [T', (H / stride) (W / stride), 4 td + 1] of a path
  [T, 3] (s, tx, ty; `vdm.control.camera`: image = s * world + t).

  For the centre p of each token in frame f, the world point w = (p - t_f) / s_f it shows; the
  features are (p_0 - p) / stride and (p_{f-1} - p) / stride with p_g = s_g w + t_g (frame 0's
  step is 0), then a given-flag of 1."""
  if height % stride or width % stride:
    raise ValueError(f"frame {height}x{width} is not a multiple of the token stride {stride}")
  path = np.asarray(path, np.float64)
  groups = pixel_frames_of_latents(len(path), temporal_downsample)  # [T', td]
  centre = (np.arange(height // stride) * stride + (stride - 1) / 2.0,
            np.arange(width // stride) * stride + (stride - 1) / 2.0)
  ys, xs = np.meshgrid(*centre, indexing="ij")
  p = np.stack([xs.ravel(), ys.ravel()], -1)  # [N, 2] pixel (x, y)
  s, t = path[:, :1, None], path[:, None, 1:]  # [T, 1, 1], [T, 1, 2]
  world = (p[None] - t) / s  # [T, N, 2]: what each token shows in each frame

  def seen_in(frame):  # [T, N, 2]: where frame `frame[f]` showed frame f's world points
    return path[frame, :1, None] * world + path[frame, None, 1:]

  previous = np.maximum(np.arange(len(path)) - 1, 0)
  moves = np.concatenate([seen_in(np.zeros(len(path), np.int64)) - p,
                          seen_in(previous) - p], -1) / stride  # [T, N, 4]
  per_frame = moves[groups].transpose(0, 2, 1, 3)  # [T', N, td, 4]
  t_lat, n = per_frame.shape[:2]
  flag = np.ones((t_lat, n, 1))
  return np.concatenate([per_frame.reshape(t_lat, n, -1), flag], -1).astype(np.float32)


def camera_frames(path, *, height: int, width: int, temporal_downsample: int) -> np.ndarray:
  """Per-latent-frame camera features float32 [T', 6 td + 1] of a path [T, 3] (s, tx, ty)
  (`no_camera` gives the features of no path)."""
  td = temporal_downsample
  path = np.asarray(path, np.float64)
  frames = len(path)
  groups = pixel_frames_of_latents(frames, td)
  scale = np.array([1.0, 1.0 / width, 1.0 / height])
  absolute = np.stack([np.log(path[:, 0]), path[:, 1], path[:, 2]], -1) * scale  # [T, 3]
  step = np.diff(absolute, axis=0, prepend=absolute[:1])  # frame 0: no step
  per_frame = np.concatenate([absolute, step], -1)[groups]  # [T', td, 6]
  flag = np.ones((len(groups), 1))
  return np.concatenate([per_frame.reshape(len(groups), 6 * td), flag], -1).astype(np.float32)


def no_camera(frames: int, temporal_downsample: int) -> np.ndarray:
  """The camera features of 'no camera given': zeros [T', 6 td + 1]."""
  t_lat = len(pixel_frames_of_latents(frames, temporal_downsample))
  return np.zeros((t_lat, camera_feature_size(temporal_downsample=temporal_downsample)),
                  np.float32)


def dit_inputs(config) -> dict:
  """The DiT's control_token_features / control_frame_features /
  control_camera_token_features for a t2v config (0 where its `control` section leaves the
  input off)."""
  from vdm.config import spatial_stride
  c, td = config.control, config.vae.temporal_downsample
  per_token = c.camera and c.camera_input == "tokens"
  return dict(
      control_token_features=trajectory_feature_size(
          stride=spatial_stride(config), temporal_downsample=td, objects=c.objects)
      if c.trajectory else 0,
      control_frame_features=camera_feature_size(temporal_downsample=td)
      if c.camera and not per_token else 0,
      control_camera_token_features=camera_token_feature_size(temporal_downsample=td)
      if per_token else 0)
