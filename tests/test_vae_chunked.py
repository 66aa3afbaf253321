"""Cached chunked encoding/decoding equals whole-clip encoding/decoding, for any chunking."""
import jax
import numpy as np
import pytest
from flax import nnx

from vdm.vae.chunked import (StreamingDecoder, decode_chunked, decode_chunks, encode_chunked,
                             jit_decode_step, jit_encode_step)
from vdm.vae.model import CausalVAE

CONFIGS = [(1, (1, 2)), (2, (1, 2, 2)), (4, (1, 2, 2)), (8, (1, 2, 2, 2))]


def make_vae(temporal_downsample, channel_mult, seed=0):
  return CausalVAE(base_channels=8, channel_mult=channel_mult, latent_channels=4,
                   temporal_downsample=temporal_downsample, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("temporal_downsample, channel_mult", CONFIGS)
@pytest.mark.parametrize("latent_frames", [7, 8])  # chunks that do and do not tile the clip
def test_cached_chunked_decode_equals_whole_clip_decode(temporal_downsample, channel_mult,
                                                        latent_frames):
  vae = make_vae(temporal_downsample, channel_mult)
  z = jax.random.normal(jax.random.key(1), (2, latent_frames, 2, 2, 4))
  whole = np.asarray(jax.jit(vae.decode)(z))
  step = jit_decode_step(vae)
  for chunk in (1, 2, 3, latent_frames):
    chunked = np.concatenate(list(decode_chunks(step, z, chunk=chunk)), axis=1)
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, atol=2e-5, err_msg=f"chunk={chunk}")


def test_uneven_chunks_and_the_cache_size_is_fixed():
  vae = make_vae(4, (1, 2, 2))
  z = jax.random.normal(jax.random.key(2), (1, 11, 2, 2, 4))
  whole = np.asarray(jax.jit(vae.decode)(z))
  step = jit_decode_step(vae)
  pieces, cache, shapes = [], None, []
  for lo, hi in [(0, 1), (1, 5), (5, 6), (6, 9), (9, 11)]:  # first frame alone, then 4, 1, 3, 2
    frames, cache = step(z[:, lo:hi], cache)
    pieces.append(np.asarray(frames))
    shapes.append([leaf.shape for leaf in jax.tree.leaves(cache)])
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, atol=2e-5)
  # The cache holds a fixed number of frames per layer, whatever the chunk or clip length.
  assert all(s == shapes[0] for s in shapes)


def test_the_cache_is_needed():
  """Decoding a later chunk from a fresh start (no cache) gives different frames."""
  vae = make_vae(2, (1, 2, 2))
  z = jax.random.normal(jax.random.key(3), (1, 6, 2, 2, 4))
  whole = np.asarray(jax.jit(vae.decode)(z))
  step = jit_decode_step(vae)
  _, cache = step(z[:, :3], None)
  with_cache, _ = step(z[:, 3:], cache)
  np.testing.assert_allclose(with_cache, whole[:, 5:], atol=2e-5)
  restarted, _ = step(z[:, 3:], None)
  assert restarted.shape[1] == 1 + 2 * 2  # restarting treats latent 3 as a clip's first frame
  assert np.abs(np.asarray(restarted)[:, 1:] - whole[:, 7:]).max() > 1e-3


@pytest.mark.parametrize("temporal_downsample, channel_mult", CONFIGS)
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_cached_chunked_encode_equals_whole_clip_encode(temporal_downsample, channel_mult,
                                                        chunk):
  vae = make_vae(temporal_downsample, channel_mult)
  frames = 1 + 6 * temporal_downsample  # 7 latent frames: chunk 2 and 3 leave a short last one
  video = jax.random.uniform(jax.random.key(4), (2, frames, 8, 8, 3), minval=-1, maxval=1)
  mean, logvar = jax.jit(vae.encode)(video)
  got_mean, got_logvar = encode_chunked(vae, video, chunk=chunk)
  s = 8 // vae.spatial_downsample
  assert got_mean.shape == mean.shape == (2, 7, s, s, 4)
  np.testing.assert_allclose(got_mean, mean, atol=2e-5)
  np.testing.assert_allclose(got_logvar, logvar, atol=2e-5)


def test_encode_chunks_must_end_on_latent_frames():
  vae = make_vae(4, (1, 2, 2))
  step = jit_encode_step(vae)
  video = jax.numpy.zeros((1, 9, 8, 8, 3))
  _, _, cache = step(video[:, :5], None)
  with pytest.raises(ValueError, match="k >= 1"):
    step(video[:, 5:7], cache)  # 2 frames: not a multiple of temporal_downsample=4
  with pytest.raises(ValueError, match="num_frames"):
    step(video[:, :4], None)  # a clip's first chunk is 1 + 4k frames
  with pytest.raises(ValueError, match="chunk"):
    encode_chunked(vae, video, chunk=0)


def test_decode_chunked_convenience_and_bad_chunk():
  vae = make_vae(2, (1, 2))
  z = jax.random.normal(jax.random.key(5), (1, 5, 4, 4, 4))
  np.testing.assert_allclose(decode_chunked(vae, z, chunk=2), jax.jit(vae.decode)(z), atol=2e-5)
  with pytest.raises(ValueError, match="chunk"):
    next(decode_chunks(jit_decode_step(vae), z, chunk=0))


def test_streaming_decoder_with_context_skips_the_context_frames():
  vae = make_vae(2, (1, 2))
  z = jax.random.normal(jax.random.key(2), (1, 7, 2, 2, 4))
  whole = np.asarray(jax.jit(vae.decode)(z))
  stream = StreamingDecoder(jit_decode_step(vae), context=z[:, :3])
  rest = np.concatenate([stream.push(z[:, 3:5]), stream.push(z[:, 5:])], axis=1)
  np.testing.assert_allclose(rest, whole[:, 1 + 2 * 2:], atol=2e-5)
