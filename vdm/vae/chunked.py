"""Chunked causal encoding and decoding: a clip of any length in bounded memory, frames streamed out.

Every temporal operation in the VAE is a causal convolution, so each one needs only the last
`kernel_t - stride_t` input frames it has seen to continue where it stopped. `CausalVAE.decode_step`
and `encode_step` carry exactly those frames from chunk to chunk as a cache (a pytree of arrays
whose size is fixed by the model, not the clip; None at the start of the clip, where the causal
padding stands in). Each chunk is computed once, with no recomputed context, and the chunks
concatenated equal the whole-clip decode (encode) up to float summation order.

The functions here are pure: a step is `(chunk, cache) -> (output, new cache)`.
"""
from __future__ import annotations

from typing import Callable, Iterator

import jax
import numpy as np
from flax import nnx

from vdm.vae.model import CausalVAE

DecodeStep = Callable[[jax.Array, "dict | None"], tuple[jax.Array, dict]]


def jit_decode_step(vae: CausalVAE, to_output: Callable[[jax.Array], jax.Array] | None = None
                    ) -> DecodeStep:
  """A jitted `(z_chunk [B, t, h, w, C], cache) -> (frames, new cache)` for `vae`.

  `to_output` (traced inside the jit) maps the decoded chunk, e.g. to uint8 pixels. The weights
  are passed as arguments, not baked into the program as constants.
  """
  graphdef, state = nnx.split(vae)

  @jax.jit
  def step(state, z, cache):
    frames, cache = nnx.merge(graphdef, state).decode_step(z, cache)
    return (frames if to_output is None else to_output(frames)), cache

  return lambda z, cache: step(state, z, cache)


def jit_encode_step(vae: CausalVAE):
  """A jitted `(video_chunk [B, t, H, W, 3], cache) -> (mean, logvar, new cache)` for `vae`."""
  graphdef, state = nnx.split(vae)

  @jax.jit
  def step(state, video, cache):
    return nnx.merge(graphdef, state).encode_step(video, cache)

  return lambda video, cache: step(state, video, cache)


def decode_chunks(step: DecodeStep, z: jax.Array, *, chunk: int) -> Iterator[np.ndarray]:
  """Yields the decoded frames of z [B, T', h, w, C], `chunk` latent frames at a time, in order.

  `step` is a decode step (`jit_decode_step(vae)`). Latent frame 0 decodes to one frame and every
  later latent frame to `temporal_downsample` frames; concatenated, the chunks equal decode(z).
  """
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
  stream = StreamingDecoder(step)
  for start in range(0, z.shape[1], chunk):
    yield stream.push(z[:, start:start + chunk])


def decode_chunked(vae: CausalVAE, z: jax.Array, *, chunk: int) -> np.ndarray:
  """z [B, T', h, w, C] -> video [B, T, H, W, 3] (float), decoded `chunk` latent frames at a time."""
  return np.concatenate(list(decode_chunks(jit_decode_step(vae), z, chunk=chunk)), axis=1)


def encode_chunked(vae: CausalVAE, video: jax.Array, *, chunk: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """video [B, T, H, W, 3] -> (mean, logvar) [B, T', h, w, C], encoded `chunk` latent frames' worth
  of pixel frames at a time: 1 + (chunk - 1) * td frames first (frame 0 is encoded alone), then
  chunk * td. Equals `vae.encode(video)` to float tolerance."""
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
  vae.latent_frames(video.shape[1])  # validates T = 1 + k * td
  td = vae.temporal_downsample
  step = jit_encode_step(vae)
  bounds = [0] + list(range(1 + (chunk - 1) * td, video.shape[1], chunk * td)) + [video.shape[1]]
  means, logvars, cache = [], [], None
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    mean, logvar, cache = step(video[:, lo:hi], cache)
    means.append(np.asarray(mean))
    logvars.append(np.asarray(logvar))
  return np.concatenate(means, axis=1), np.concatenate(logvars, axis=1)


class StreamingDecoder:
  """Decodes latent chunks as they arrive, carrying the decoder's causal-conv cache.

  push(z_chunk [B, k, h, w, C]) returns the chunk's frames; the concatenation of all returns
  equals decode(all latents). Pass `context` (latents already decoded elsewhere, e.g. the encoded
  tail of a video being extended) to start as if they had been pushed, without their frames.
  """

  def __init__(self, step: DecodeStep, *, context: jax.Array | None = None):
    self.step, self.cache = step, None
    if context is not None:
      _, self.cache = step(context, None)

  def push(self, z: jax.Array) -> np.ndarray:
    frames, self.cache = self.step(z, self.cache)
    return np.asarray(frames)
