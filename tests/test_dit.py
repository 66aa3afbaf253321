"""Space-time DiT: shapes, patchify round trip, and per-frame locality of everything but temporal attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.dit.layers import patchify, spacetime_position_embedding, unpatchify
from vdm.dit.model import DiT


def inputs(frames=4):
  r = jax.random.split(jax.random.key(0), 3)
  z = jax.random.normal(r[0], (2, frames, 8, 8, 4))
  levels = jax.random.uniform(r[1], (2, frames))
  text = jax.random.normal(r[2], (2, 6, 16))
  mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  return z, levels, text, mask


def test_patchify_round_trip():
  z = jax.random.normal(jax.random.key(0), (2, 3, 8, 12, 4))
  tokens = patchify(z, 2)
  assert tokens.shape == (2, 3, 24, 16)
  np.testing.assert_array_equal(unpatchify(tokens, 2, 8, 12), z)


def test_position_embedding_distinguishes_every_token():
  emb = spacetime_position_embedding(3, 4, 5, 48).reshape(60, 48)
  distances = jnp.linalg.norm(emb[:, None] - emb[None], axis=-1)
  assert emb.shape == (60, 48)
  assert float(jnp.min(distances + jnp.eye(60) * 1e9)) > 1e-3


def test_output_shape_and_zero_init():
  model = DiT(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2,
              rngs=nnx.Rngs(0))
  out = model(*inputs())
  assert out.shape == (2, 4, 8, 8, 4)
  np.testing.assert_array_equal(out, 0.0)  # adaLN-zero: the untrained model predicts 0


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_block_causal_mask_keeps_past_frames_independent_of_the_future(randomized_dit,
                                                                      attention):
  """With a causal temporal mask, changing frame 2 (its latents or its level) leaves frames 0-1
  unchanged: spatial attention, cross-attention, the MLP and adaLN act within a frame only (and
  full 3D attention applies the mask frame by frame)."""
  model = randomized_dit(attention=attention)
  z, levels, text, mask = inputs()
  causal = jnp.tril(jnp.ones((4, 4), bool))
  base = model(z, levels, text, mask, temporal_mask=causal)
  z2 = z.at[:, 2].add(1.0)
  levels2 = levels.at[:, 2].set(0.9)
  for out in (model(z2, levels, text, mask, temporal_mask=causal),
              model(z, levels2, text, mask, temporal_mask=causal)):
    np.testing.assert_allclose(out[:, :2], base[:, :2], atol=1e-5)
    assert not np.allclose(out[:, 2:], base[:, 2:], atol=1e-3)
  # Without the mask, temporal attention carries the change backwards.
  full = model(z2, levels, text, mask)
  assert not np.allclose(full[:, :2], model(z, levels, text, mask)[:, :2], atol=1e-3)


def test_padded_text_tokens_are_ignored(randomized_dit):
  model = randomized_dit()
  z, levels, text, mask = inputs()
  other = text.at[0, 3:].set(5.0)
  np.testing.assert_allclose(model(z, levels, text, mask)[0], model(z, levels, other, mask)[0],
                             atol=1e-5)


def test_remat_policies_change_memory_not_results(randomized_dit):
  """Activation checkpointing recomputes in the backward pass; values and gradients must match."""
  from flax import nnx
  base = randomized_dit()
  z, levels, text, mask = inputs()
  graphdef, params = nnx.split(base, nnx.Param)

  def loss_and_grads(remat):
    model = nnx.merge(graphdef, params)
    model.remat = remat

    def loss(p):
      m = nnx.merge(nnx.graphdef(model), p)
      return jnp.mean(m(z, levels, text, mask) ** 2)
    return jax.value_and_grad(loss)(nnx.state(model, nnx.Param))

  want_loss, want_grads = loss_and_grads("none")
  for remat in ("full", "dots"):
    got_loss, got_grads = loss_and_grads(remat)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  import pytest
  with pytest.raises(ValueError, match="dit.remat"):
    DiT(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2, remat="some",
        rngs=nnx.Rngs(0))


def test_temporal_window_limits_how_far_a_frame_sees(randomized_dit):
  """With dit.temporal_window = 1, frame 3 depends on frames 2-4 only through each block; after
  two blocks (depth 2) a change to frame 0 reaches frame 2 but never frame 3 or later."""
  from vdm.dit.model import DiT
  model = randomized_dit()
  local = DiT(latent_channels=4, text_width=16, width=32, depth=2, heads=4, patch=2,
              temporal_window=1, rngs=nnx.Rngs(0))
  nnx.update(local, nnx.state(model, nnx.Param))
  z, levels, text, mask = inputs(frames=6)
  base = local(z, levels, text, mask)
  changed = local(z.at[:, 0].add(1.0), levels, text, mask)
  reach = np.abs(np.asarray(changed - base)).max(axis=(0, 2, 3, 4))
  assert reach[2] > 1e-4 and np.all(reach[3:] < 1e-6)


def test_qk_norm_makes_attention_invariant_to_the_scale_of_queries_and_keys():
  from vdm.dit.layers import Attention
  x = jax.random.normal(jax.random.key(0), (2, 5, 32))
  for qk_norm, invariant in ((True, True), (False, False)):
    attn = Attention(32, 4, qk_norm=qk_norm, rngs=nnx.Rngs(0))
    base = attn(x)
    attn.q.kernel.value = attn.q.kernel.value * 30.0  # logits x30 unless normalised
    scaled = attn(x)
    assert np.allclose(scaled, base, atol=1e-4) == invariant


def _cached_chunks(model, z, levels, text, mask, chunk, frame_offset=0):
  """The clip run chunk by chunk through `forward_cached`, each chunk's keys and values written
  to the cache before the next; returns the concatenated outputs [B, T, h, w, C]."""
  from vdm.generate.kv_cache import empty_cache, write_frames
  b, t, h, w, _ = z.shape
  cache = empty_cache(depth=model.depth, batch_tokens=b * (h // 2) * (w // 2), slots=t,
                      heads=4, head_dim=8)
  outs = []
  for start in range(0, t, chunk):
    out, (k, v) = model.forward_cached(z[:, start:start + chunk], levels[:, start:start + chunk],
                                       text, mask, cache, frame_offset + start)
    cache = write_frames(cache, k, v, start)
    outs.append(out)
  return jnp.concatenate(outs, axis=1)


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_rope3d_sees_relative_frame_positions_only(randomized_dit, attention):
  """Shifting every frame position (frame_offset) leaves a rope3d model's output unchanged: its
  attention scores depend on position differences. The additive sincos embedding changes."""
  z, levels, text, mask = inputs()
  rope = randomized_dit(attention=attention, position="rope3d")
  np.testing.assert_allclose(rope(z, levels, text, mask, frame_offset=7),
                             rope(z, levels, text, mask), atol=2e-5, rtol=1e-4)
  sincos = randomized_dit(attention=attention)
  assert not np.allclose(sincos(z, levels, text, mask, frame_offset=7),
                         sincos(z, levels, text, mask), atol=1e-3)
  # Rows and columns are relative too, but the model is not blind to position: swapping two
  # frames changes the output (a permutation-invariant model would only permute it).
  swapped = rope(z[:, ::-1], levels[:, ::-1], text, mask)[:, ::-1]
  assert not np.allclose(swapped, rope(z, levels, text, mask), atol=1e-3)


@pytest.mark.parametrize("attention, position", [("factorized", "rope3d"), ("full", "rope3d"),
                                                 ("factorized", "sincos")])
def test_kv_cached_chunks_equal_the_block_causal_full_forward(randomized_dit, attention,
                                                               position):
  """Chunk by chunk with the KV cache (cached keys keep their rotation) equals one forward pass
  under the block-causal mask; with rope3d also when the clip starts at a frame offset."""
  from vdm.generate.modes import block_causal_mask
  model = randomized_dit(attention=attention, position=position)
  z, levels, text, mask = inputs(frames=6)
  causal = jnp.asarray(block_causal_mask(6, 2))
  for offset in (0, 5) if position == "rope3d" else (0,):
    want = model(z, levels, text, mask, temporal_mask=causal, frame_offset=offset)
    got = _cached_chunks(model, z, levels, text, mask, chunk=2, frame_offset=offset)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_rope3d_keeps_the_block_causal_mask_causal(randomized_dit, attention):
  model = randomized_dit(attention=attention, position="rope3d")
  z, levels, text, mask = inputs()
  causal = jnp.tril(jnp.ones((4, 4), bool))
  base = model(z, levels, text, mask, temporal_mask=causal)
  changed = model(z.at[:, 2].add(1.0), levels.at[:, 3].set(0.1), text, mask,
                  temporal_mask=causal)
  np.testing.assert_allclose(changed[:, :2], base[:, :2], atol=1e-5)
  assert not np.allclose(changed[:, 2:], base[:, 2:], atol=1e-3)


def test_rope3d_rotation_is_relative_and_splits_the_head_by_axis():
  """apply_rope preserves norms, and q(p) . k(p') depends on p' - p only; frames take the
  largest share of the head's pairs (Wan's split)."""
  from vdm.dit.layers import apply_rope, rope3d_angles, rope3d_split
  assert rope3d_split(8) == (2, 1, 1) and rope3d_split(64) == (12, 10, 10)
  with pytest.raises(ValueError, match="dit.position='rope3d'.*even head dimension"):
    rope3d_split(5)
  q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 1, 12))

  def score(offset_q, offset_k):
    rot = lambda x, o: apply_rope(  # noqa: E731
        x, tuple(f(rope3d_angles(3, 2, 2, 12, o).reshape(1, 12, 6)) for f in (jnp.cos, jnp.sin)))
    return jnp.einsum("blhd,bmhd->lm", rot(jnp.tile(q, (1, 12, 1, 1)), offset_q),
                      rot(jnp.tile(k, (1, 12, 1, 1)), offset_k))

  np.testing.assert_allclose(score(0, 0), score(4, 4), atol=1e-5)
  rotated = apply_rope(q, tuple(f(jnp.full((1, 1, 6), 0.7)) for f in (jnp.cos, jnp.sin)))
  np.testing.assert_allclose(jnp.linalg.norm(rotated), jnp.linalg.norm(q), rtol=1e-6)


def _scanned_copy(model, **options):
  """The same weights in a DiT built with scan_layers=True (via the `scan_params` converter)."""
  from vdm.dit.model import scan_params
  depth = model.depth
  scanned = DiT(latent_channels=4, text_width=16, width=32, depth=depth, heads=4, patch=2,
                scan_layers=True, rngs=nnx.Rngs(0), **options)
  nnx.update(scanned, scan_params(nnx.state(model, nnx.Param), depth))
  return scanned


def test_scanned_layers_are_the_unrolled_layers_stacked():
  """Same seed, same weights: scan_layers only stacks the blocks (converter round trip exact)."""
  from vdm.dit.model import scan_params, unscan_params
  kw = dict(latent_channels=4, text_width=16, width=32, depth=3, heads=4, patch=2)
  unrolled = nnx.state(DiT(**kw, rngs=nnx.Rngs(0)), nnx.Param)
  scanned = nnx.state(DiT(**kw, scan_layers=True, rngs=nnx.Rngs(0)), nnx.Param)
  assert scanned["blocks"]["mlp"]["fc1"]["kernel"].shape == (3, 32, 128)
  inside = lambda state: nnx.from_flat_state(  # noqa: E731 - as a Denoiser holds its DiT
      {("dit", *path): v for path, v in nnx.to_flat_state(state)})
  for want, got in ((scanned, scan_params(unrolled, 3)), (unrolled, unscan_params(scanned, 3)),
                    (inside(scanned), scan_params(inside(unrolled), 3))):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("attention, remat, position", [
    ("factorized", "none", "sincos"), ("factorized", "dots", "rope3d"), ("full", "full", "sincos")])
def test_scanned_layers_equal_unrolled_outputs_and_gradients(randomized_dit, attention, remat,
                                                              position):
  from vdm.dit.model import scan_params
  base = randomized_dit(attention=attention, position=position, remat=remat)
  scanned = _scanned_copy(base, attention=attention, position=position, remat=remat)
  z, levels, text, mask = inputs()
  causal = jnp.tril(jnp.ones((4, 4), bool))

  def loss(model):
    return jnp.mean(model(z, levels, text, mask, temporal_mask=causal) ** 2)

  want_loss, want_grads = nnx.value_and_grad(loss)(base)
  got_loss, got_grads = nnx.value_and_grad(loss)(scanned)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  want_grads = scan_params(nnx.state(want_grads, nnx.Param), base.depth)
  for a, b in zip(jax.tree.leaves(nnx.state(got_grads, nnx.Param)), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_scanned_layers_run_the_kv_cache(randomized_dit, attention):
  """forward_cached scans the cache's [depth, ...] keys and values with the weights."""
  from vdm.generate.modes import block_causal_mask
  scanned = _scanned_copy(randomized_dit(attention=attention), attention=attention)
  z, levels, text, mask = inputs(frames=6)
  want = scanned(z, levels, text, mask, temporal_mask=jnp.asarray(block_causal_mask(6, 2)))
  np.testing.assert_allclose(_cached_chunks(scanned, z, levels, text, mask, chunk=2), want,
                             atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("frames, temporal_patch, token_frames", [
    (5, 2, 3), (6, 2, 4), (4, 3, 2), (9, 4, 3), (1, 2, 1), (3, 1, 3)])
def test_temporal_patchify_round_trip(frames, temporal_patch, token_frames):
  """Frame 0 alone, then groups of temporal_patch (the last one padded): unpatchify recovers
  every frame exactly and drops the padding."""
  from vdm.dit.layers import temporal_groups, token_frame_of
  z = jax.random.normal(jax.random.key(0), (2, frames, 4, 6, 3))
  tokens = patchify(z, 2, temporal_patch)
  assert tokens.shape == (2, token_frames, 6, temporal_patch * 2 * 2 * 3)
  np.testing.assert_array_equal(unpatchify(tokens, 2, 4, 6, temporal_patch, frames), z)
  groups = temporal_groups(frames, temporal_patch)
  assert (groups[0] == 0).all() and groups.max() == frames - 1
  for f, g in enumerate(token_frame_of(frames, temporal_patch)):
    assert f in groups[g]


def test_temporal_patch_is_the_identity_grouping_at_one():
  z = jax.random.normal(jax.random.key(0), (2, 3, 8, 12, 4))
  np.testing.assert_array_equal(patchify(z, 2, 1), patchify(z, 2))
  np.testing.assert_array_equal(unpatchify(patchify(z, 2), 2, 8, 12, 1, 3), z)


@pytest.mark.parametrize("frames", [4, 5])
def test_temporal_patch_output_shape_and_group_levels(randomized_dit, frames):
  """A temporal_patch=2 model returns one velocity per latent frame (the padding of a short last
  group cropped); a group is conditioned on one level, so within a group only its first frame's
  level is read, and under a block-causal mask over groups the first group ignores the rest."""
  model = randomized_dit(temporal_patch=2)
  assert model.embed.kernel.shape == (2 * 2 * 2 * 4, 32)
  z, levels, text, mask = inputs(frames)
  out = model(z, levels, text, mask)
  assert out.shape == z.shape
  np.testing.assert_allclose(model(z, levels.at[:, 2].set(0.3), text, mask), out, atol=1e-6)
  assert not np.allclose(model(z, levels.at[:, 1].set(0.3), text, mask), out, atol=1e-3)
  groups = jnp.asarray([0, 1, 1, 2, 2][:frames])
  causal = groups[None, :] <= groups[:, None]
  base = model(z, levels, text, mask, temporal_mask=causal)
  changed = model(z.at[:, 3:].add(1.0), levels, text, mask, temporal_mask=causal)
  np.testing.assert_allclose(changed[:, :3], base[:, :3], atol=1e-5)
  with pytest.raises(ValueError, match="dit.temporal_patch=1"):
    model.forward_cached(z, levels, text, mask, None, 0)
