"""Chunked causal decoding: a clip of any length decoded in bounded memory, frames streamed out.

Every temporal operation in the decoder is a causal convolution, so an output frame depends only
on a fixed number of earlier latent frames (`decoder_lookback`). Decoding latents
[start - lookback, stop) and keeping the frames of [start, stop) therefore gives exactly the frames
a whole-clip decode gives (the replicate padding at the window's start only touches frames that are
dropped), at a cost and memory set by the chunk, not the clip.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import jax
import numpy as np

from vdm.vae.model import CausalVAE


def decoder_lookback(vae: CausalVAE) -> int:
  """Latent frames before a latent frame that can change its decoded pixels (an upper bound).

  Sums each causal conv's temporal reach (kernel_t - 1 frames at its own frame rate, rounded up
  to whole latent frames) along the decoder: conv_in, mid block, residual blocks, upsamplers
  (their depth-to-time conv runs at the lower rate, their spatial conv at the new one), conv_out.
  """
  decoder = vae.decoder
  rate = 1  # pixel-rate frames per latent frame at the current layer
  reach = 0.0

  def conv(c, rate):
    return (c.kernel_size[0] - 1) * c.strides[0] / rate

  def block(b, rate):
    return conv(b.conv1, rate) + conv(b.conv2, rate)

  reach += conv(decoder.conv_in, rate) + block(decoder.mid, rate)
  per_level = decoder.num_res_blocks
  for i in range(len(decoder.ups) + 1):
    for j in range(per_level):
      reach += block(decoder.blocks[i * per_level + j], rate)
    if i < len(decoder.ups):
      up = decoder.ups[i]
      if up.to_time is not None:
        reach += conv(up.to_time, rate)
        rate *= 2
      reach += conv(up.conv, rate)
  reach += conv(decoder.conv_out, rate)
  return int(math.ceil(reach))


def decode_chunks(decode: Callable[[jax.Array], jax.Array], z: jax.Array, *, chunk: int,
                  lookback: int, temporal_downsample: int) -> Iterator[np.ndarray]:
  """Yields the decoded frames of z [B, T', h, w, C] chunk by chunk, in order.

  Args:
    decode: latents [B, t, h, w, C] -> frames [B, 1 + (t - 1) * temporal_downsample, ...]
      (e.g. a jitted `vae.decode` plus the conversion to pixels).
    chunk: latent frames decoded per call after the lookback.
    lookback: latent frames of context before each chunk (`decoder_lookback(vae)` for exact).
  Concatenated along time the chunks equal decode(z). Latent frame 0 decodes to 1 frame and every
  later latent frame to `temporal_downsample` frames.
  """
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
  stream = StreamingDecoder(decode, lookback=lookback, temporal_downsample=temporal_downsample)
  for start in range(0, z.shape[1], chunk):
    yield stream.push(z[:, start:start + chunk])


class StreamingDecoder:
  """Decodes latent chunks as they arrive, keeping only `lookback` latent frames of context.

  push(z_chunk [B, k, h, w, C]) returns the chunk's frames; the concatenation of all returns
  equals decode(all latents). Pass `context` (latents already decoded elsewhere, e.g. the encoded
  tail of a video being extended) to start as if they had been pushed, without their frames.
  """

  def __init__(self, decode: Callable[[jax.Array], jax.Array], *, lookback: int,
               temporal_downsample: int, context: jax.Array | None = None):
    self.decode, self.lookback, self.stride = decode, lookback, temporal_downsample
    self.past = None if context is None else context[:, context.shape[1] - lookback:]

  def push(self, z: jax.Array) -> np.ndarray:
    window = z if self.past is None else jax.numpy.concatenate([self.past, z], axis=1)
    n = window.shape[1] - z.shape[1]
    video = np.asarray(self.decode(window))
    self.past = window[:, max(0, window.shape[1] - self.lookback):] if self.lookback else None
    return video[:, (1 + (n - 1) * self.stride) if n else 0:]
