"""Chunked causal decoding equals whole-clip decoding, and needs all of its lookback."""
import jax
import numpy as np
import pytest
from flax import nnx

from vdm.vae.chunked import StreamingDecoder, decode_chunks, decoder_lookback
from vdm.vae.model import CausalVAE


@pytest.mark.parametrize("temporal_downsample, channel_mult", [(2, (1, 2, 2)), (4, (1, 2, 2)),
                                                              (1, (1, 2))])
def test_chunked_decode_equals_whole_clip_decode(temporal_downsample, channel_mult):
  vae = CausalVAE(base_channels=8, channel_mult=channel_mult, latent_channels=4,
                  temporal_downsample=temporal_downsample, rngs=nnx.Rngs(0))
  lookback = decoder_lookback(vae)
  z = jax.random.normal(jax.random.key(1), (1, lookback + 9, 2, 2, 4))
  decode = jax.jit(vae.decode)
  whole = np.asarray(decode(z))
  chunked = np.concatenate(list(decode_chunks(decode, z, chunk=4, lookback=lookback,
                                              temporal_downsample=temporal_downsample)), axis=1)
  assert chunked.shape == whole.shape
  np.testing.assert_allclose(chunked, whole, atol=1e-5)
  # One latent frame less of context changes frames: the bound is needed, not just safe.
  short = np.concatenate(list(decode_chunks(decode, z, chunk=4, lookback=lookback - 1,
                                            temporal_downsample=temporal_downsample)), axis=1)
  assert np.abs(short - whole).max() > 1e-4


def test_streaming_decoder_with_context_skips_the_context_frames():
  vae = CausalVAE(base_channels=8, channel_mult=(1, 2), latent_channels=4, temporal_downsample=2,
                  rngs=nnx.Rngs(0))
  decode = jax.jit(vae.decode)
  z = jax.random.normal(jax.random.key(2), (1, 7, 2, 2, 4))
  whole = np.asarray(decode(z))
  stream = StreamingDecoder(decode, lookback=decoder_lookback(vae), temporal_downsample=2,
                            context=z[:, :3])
  rest = np.concatenate([stream.push(z[:, 3:5]), stream.push(z[:, 5:])], axis=1)
  np.testing.assert_allclose(rest, whole[:, 1 + 2 * 2:], atol=1e-5)
