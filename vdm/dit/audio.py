"""The DiT's audio token stream (config audio.enabled): one token per audio latent frame, with
blocks of its own beside the video blocks (LTX-2's layout), joined to the video by attention.

Per layer, after the video block: the audio tokens attend each other (self-attention over time),
then the video tokens (audio <- video), while the video tokens attend the audio tokens
(video <- audio, a gated branch added to the video stream), then the text, then an MLP. Every
branch is adaLN-zero modulated by its own stream's per-frame noise level, so each stream has a
noise level per frame of its own and the noise-level-matrix modes extend to audio. The
cross-modal gates start at zero: an untrained joint DiT's video path is exactly the video DiT's.
With video_attention=False (the ablation) there is no attention between the streams at all: the
audio is generated from the text alone.

Time: audio latent frame a covers pixel frame a // r (r = audio latent frames per pixel frame);
pixel frame f belongs to video latent frame 0 if f = 0, else 1 + (f - 1) // td. Masks between the
streams follow from the video's temporal mask through that map (a block-causal video mask makes
the audio block-causal with it), and positions are in video-latent-frame units, so an audio token
and the video frame shown at its time get the same time embedding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.dit.layers import Attention, Mlp, dense, modulate, speed_options

_zeros = nnx.initializers.zeros


def audio_video_frames(num_audio: int, per_pixel_frame: int,
                       temporal_downsample: int) -> np.ndarray:
  """The video latent frame of each audio latent frame, int32 [num_audio]."""
  if per_pixel_frame < 1 or num_audio % per_pixel_frame:
    raise ValueError(f"{num_audio} audio latent frames are not whole video frames of "
                     f"{per_pixel_frame} each")
  pixel = np.arange(num_audio) // per_pixel_frame
  return np.where(pixel == 0, 0, 1 + (pixel - 1) // temporal_downsample).astype(np.int32)


def audio_times(num_audio: int, per_pixel_frame: int, temporal_downsample: int) -> np.ndarray:
  """Start time of each audio latent frame in video-latent-frame units, float32 [num_audio]:
  pixel frame f starts at f / td, so video latent frame l (whose last pixel frame is l td) and
  the audio of that frame share the time l."""
  return (np.arange(num_audio) / per_pixel_frame / temporal_downsample).astype(np.float32)


def cross_modal_masks(temporal_mask, frame_of_audio: np.ndarray):
  """(audio [Ta, Ta], audio <- video [Ta, T], video <- audio [T, Ta]) bool masks from the
  video's temporal mask [T, T] (None: everything sees everything, three Nones)."""
  if temporal_mask is None:
    return None, None, None
  rows = temporal_mask[frame_of_audio]
  return rows[:, frame_of_audio], rows, temporal_mask[:, frame_of_audio]


class AudioBlock(nnx.Module):
  """One layer of the audio stream (see the module docstring)."""

  def __init__(self, width: int, heads: int, mlp_ratio: float, *, video_attention: bool,
               rngs: nnx.Rngs, qk_norm: bool = False, matmul_dtype: str = "float32",
               fast_grads: bool = True):
    self.norm, kw = speed_options(matmul_dtype, fast_grads)
    attn = lambda: Attention(width, heads, qk_norm=qk_norm, rngs=rngs, **kw)  # noqa: E731
    self.video_attention = bool(video_attention)
    self.attn, self.cross = attn(), attn()
    self.mlp = Mlp(width, int(width * mlp_ratio), rngs=rngs, **kw)
    # (shift, scale, gate) of the self-attention, the MLP and, with video attention, the audio
    # <- video branch; all zero at init (adaLN-zero).
    self.num_modulations = 3 * (3 if self.video_attention else 2)
    self.modulation = dense(width, self.num_modulations * width, ("embed", "mlp"),
                            kernel_init=_zeros, rngs=rngs, **kw)
    if self.video_attention:
      self.from_video, self.to_video = attn(), attn()
      # The video <- audio branch is modulated by the video's own per-frame levels.
      self.video_modulation = dense(width, 3 * width, ("embed", "mlp"), kernel_init=_zeros,
                                    rngs=rngs, **kw)

  def __call__(self, a, cond_a, x, cond_v, text, text_mask, masks):
    """a [B, Ta, D] audio tokens; cond_a [B, Ta, D]; x [B, T, N, D] video tokens; cond_v
    [B, T, D]; text [B, L, D], text_mask [B, L]; masks: `cross_modal_masks` (frame level).
    Returns (a, x), both updated."""
    b, t, n, d = x.shape
    audio_mask, from_video_mask, to_video_mask = masks
    mods = jnp.split(self.modulation(jax.nn.silu(cond_a)), self.num_modulations, axis=-1)
    shift, scale, gate = mods[:3]
    a = a + gate * self.attn(modulate(self.norm(a), shift, scale), mask=audio_mask)
    if self.video_attention:
      shift, scale, gate = mods[6:9]
      video = self.norm(x).reshape(b, t * n, d)
      mask = None if from_video_mask is None else jnp.repeat(from_video_mask, n, axis=1)
      a = a + gate * self.from_video(modulate(self.norm(a), shift, scale), video, mask=mask)
      v_shift, v_scale, v_gate = jnp.split(self.video_modulation(jax.nn.silu(cond_v)), 3, -1)
      h = modulate(self.norm(x), v_shift, v_scale).reshape(b, t * n, d)
      mask = None if to_video_mask is None else jnp.repeat(to_video_mask, n, axis=0)
      h = self.to_video(h, self.norm(a), mask=mask).reshape(b, t, n, d)
      x = x + v_gate[:, :, None, :] * h
    a = a + self.cross(self.norm(a), text, mask=text_mask[:, None, None, :])
    shift, scale, gate = mods[3:6]
    a = a + gate * self.mlp(modulate(self.norm(a), shift, scale))
    return a, x


def audio_block_params(width: int, mlp_ratio: float, heads: int, *, video_attention: bool,
                       qk_norm: bool) -> int:
  """Parameters of one `AudioBlock`, in closed form (dense(i, o) = i o + o)."""
  dense_params = lambda i, o: i * o + o  # noqa: E731
  attention = dense_params(width, width) + dense_params(width, 2 * width) + dense_params(
      width, width) + (2 * (width // heads) if qk_norm else 0)
  hidden = int(width * mlp_ratio)
  attentions = 4 if video_attention else 2
  modulation = dense_params(width, 3 * (3 if video_attention else 2) * width)
  video_modulation = dense_params(width, 3 * width) if video_attention else 0
  return (attentions * attention + dense_params(width, hidden) + dense_params(hidden, width)
          + modulation + video_modulation)
