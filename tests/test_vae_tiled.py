"""Tiled spatial decoding: one tile is the whole decode; overlapping tiles blend to nearly it
(GroupNorm), or exactly to it with a per-position norm and a margin of the decoder's reach."""
import jax
import numpy as np
import pytest
from flax import nnx

from vdm.vae.chunked import jit_decode_step
from vdm.vae.model import CausalVAE
from vdm.vae.tiled import blend_ramp, decode_tiled, decoder_reach, tile_starts


@pytest.fixture(scope="module")
def vae_and_z():
  vae = CausalVAE(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4,
                  temporal_downsample=2, rngs=nnx.Rngs(0))
  # A smooth latent field, as a trained encoder gives (white noise would make every seam worst).
  coarse = jax.random.normal(jax.random.key(1), (1, 3, 4, 5, 4))
  z = jax.image.resize(coarse, (1, 3, 16, 20, 4), "linear")
  whole = np.asarray(jit_decode_step(vae)(z, None)[0])
  return vae, z, whole


def test_tile_starts_cover_the_axis():
  assert tile_starts(16, 16, 4) == [0] and tile_starts(16, 32, 4) == [0]
  assert tile_starts(16, 8, 2) == [0, 6, 8]
  assert tile_starts(20, 8, 4) == [0, 4, 8, 12]
  for size, tile, overlap in [(16, 8, 2), (20, 6, 3), (9, 4, 1)]:
    starts = tile_starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
      covered[s:s + tile] = True
    assert covered.all() and starts[-1] + tile == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_blend_ramp_sums_to_one_over_an_overlap():
  ramp = 8
  left, right = blend_ramp(16, ramp, False, True), blend_ramp(16, ramp, True, False)
  # Tiles at 0 and 8 (overlap 8): the falling and rising ramps add to 1 on the shared part.
  np.testing.assert_allclose(left[8:] + right[:8], 1.0, rtol=1e-6)
  assert blend_ramp(5, 0, True, True).tolist() == [1.0] * 5


def test_a_tile_covering_the_frame_is_the_whole_decode(vae_and_z):
  vae, z, whole = vae_and_z
  np.testing.assert_array_equal(decode_tiled(vae, z, tile=32, overlap=4), whole)
  np.testing.assert_array_equal(decode_tiled(vae, z, tile=20, overlap=0), whole)


def test_tiles_decoded_in_temporal_chunks_equal_whole_tiles(vae_and_z):
  vae, z, _ = vae_and_z
  np.testing.assert_allclose(decode_tiled(vae, z, tile=8, overlap=4, chunk=1),
                             decode_tiled(vae, z, tile=8, overlap=4), atol=2e-5)


def test_overlap_shrinks_the_seam_error_on_the_shipped_vae():
  """The shipped spine VAE on synthetic clips at 64x96 (16x24 latents).

  Tiles are not exact: besides the 'SAME' zero padding at tile borders, every GroupNorm takes
  its statistics over the whole tile, and a tile of flat background has very different
  statistics from the frame. Overlap and ramps hide the border part of that error only.
  """
  from vdm.data import simple
  from vdm.models import load_model_dir
  _, _, vae, _, _ = load_model_dir("checkpoints/spine")
  clips = np.stack([e["video"] for _, e in simple.generate_examples(0, "test", 2, 64, 96, 9)])
  z = jax.jit(vae.encode)(jax.numpy.asarray(clips, np.float32) / 127.5 - 1.0)[0]
  whole = np.asarray(jit_decode_step(vae)(z, None)[0])
  err = {}
  for tile, overlap in [(8, 0), (8, 4), (16, 8)]:
    diff = np.abs(decode_tiled(vae, z, tile=tile, overlap=overlap) - whole)
    err[tile, overlap] = (float(diff.max()), float(diff.mean()))
    print(f"tile {tile} overlap {overlap}: max |tiled - whole| {diff.max():.3f}, "
          f"mean {diff.mean():.4f}")
  assert err[8, 4][1] < err[8, 0][1] and err[16, 8][1] < err[8, 4][1]


def test_bad_tiles_are_named(vae_and_z):
  vae, z, _ = vae_and_z
  with pytest.raises(ValueError, match="tile"):
    decode_tiled(vae, z, tile=0, overlap=0)
  with pytest.raises(ValueError, match="overlap"):
    decode_tiled(vae, z, tile=4, overlap=4)
  with pytest.raises(ValueError, match="chunk"):
    decode_tiled(vae, z, tile=4, overlap=1, chunk=0)


@pytest.fixture(scope="module")
def rms_vae_and_z():
  vae = CausalVAE(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4,
                  temporal_downsample=2, norm="rms", rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(2), (1, 2, 40, 44, 4))
  return vae, z, np.asarray(jit_decode_step(vae)(z, None)[0])


def test_decoder_reach_bounds_where_a_latent_changes_the_decode(rms_vae_and_z):
  vae, z, whole = rms_vae_and_z
  reach, s = decoder_reach(vae), vae.spatial_downsample
  q = 20  # perturb one latent pixel (all frames, channels)
  changed = np.asarray(jit_decode_step(vae)(z.at[:, :, q, q].add(3.0), None)[0]) != whole
  rows = np.nonzero(changed.any(axis=(0, 1, 3, 4)))[0] // s  # latent row of each changed pixel
  assert np.abs(rows - q).max() <= reach
  assert np.abs(rows - q).max() >= reach - 2  # and the bound is not loose


def test_rms_norm_tiles_with_a_margin_of_the_reach_equal_the_whole_decode(rms_vae_and_z):
  vae, z, whole = rms_vae_and_z
  reach = decoder_reach(vae)
  tiled = decode_tiled(vae, z, tile=2 * reach + 12, overlap=2 * reach + 2, margin=reach)
  np.testing.assert_allclose(tiled, whole, atol=2e-5)
  # Without the margin the same tiles blend in values the zero padding changed.
  assert np.abs(decode_tiled(vae, z, tile=2 * reach + 12, overlap=2 * reach + 2)
                - whole).max() > 1e-3


def test_bad_margin_is_named(rms_vae_and_z):
  vae, z, _ = rms_vae_and_z
  with pytest.raises(ValueError, match="margin must be >= 0 with 2 \\* margin < overlap=4"):
    decode_tiled(vae, z, tile=8, overlap=4, margin=2)
