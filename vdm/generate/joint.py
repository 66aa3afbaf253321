"""Joint audio-video generation: both streams in one sampler run over one noise-level matrix.

The samplers (`vdm.diffusion.samplers`) walk a matrix of levels [R, T] over frames x [B, T, ...].
A joint clip is one such array: the video's latent frames, then the audio's, each flattened and
zero-padded to one width (`pack`), so every sampler and every mode runs unchanged on it. Its
matrix has a column per video latent frame and one per audio latent frame (`joint_levels`): an
audio column takes the levels of the video frame shown at its time, so a mode's schedule holds
for both streams (parallel, autoregressive and rolling chunks, keyframes first), and a given
stream is pinned at level 0 in every row (audio for a given video, video for a given audio),
which the samplers then leave untouched.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

# What `given` may name in `joint_levels`: nothing (both generated), the video or the audio.
GIVEN = ("", "video", "audio")


def pack(video: jnp.ndarray, audio: jnp.ndarray) -> jnp.ndarray:
  """video [B, Tv, h, w, C], audio [B, Ta, Ca] -> frames [B, Tv + Ta, P], P = max(h w C, Ca),
  each frame flattened and zero-padded to P."""
  b, tv = video.shape[:2]
  flat_v = video.reshape(b, tv, -1)
  width = max(flat_v.shape[-1], audio.shape[-1])
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, width - x.shape[-1])))  # noqa: E731
  return jnp.concatenate([pad(flat_v), pad(audio)], axis=1)


def unpack(frames: jnp.ndarray, video_shape: tuple, audio_shape: tuple):
  """Inverse of `pack`: frames [B, Tv + Ta, P] -> (video [B, *video_shape], audio
  [B, *audio_shape]); video_shape = (Tv, h, w, C), audio_shape = (Ta, Ca)."""
  tv = video_shape[0]
  size = int(np.prod(video_shape[1:]))
  b = frames.shape[0]
  video = frames[:, :tv, :size].reshape((b,) + tuple(video_shape))
  audio = frames[:, tv:tv + audio_shape[0], :audio_shape[1]]
  return video, audio


def joint_levels(video_levels: np.ndarray, frame_of_audio: np.ndarray, *,
                 given: str = "") -> np.ndarray:
  """The joint noise-level matrix [R, Tv + Ta] from a mode's video matrix [R, Tv] and the video
  latent frame of each audio latent frame [Ta] (`vdm.dit.audio.audio_video_frames`); the given
  stream's columns are 0 in every row."""
  if given not in GIVEN:
    raise ValueError(f"given must be one of {GIVEN}, got {given!r}")
  video_levels = np.asarray(video_levels, np.float32)
  audio_levels = video_levels[:, np.asarray(frame_of_audio)]
  if given == "video":
    video_levels = np.zeros_like(video_levels)
  elif given == "audio":
    audio_levels = np.zeros_like(audio_levels)
  return np.concatenate([video_levels, audio_levels], axis=1)
