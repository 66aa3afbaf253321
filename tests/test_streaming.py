"""KV-cached autoregressive and rolling generation equal the full noise-level-matrix sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.diffusion.samplers import euler
from vdm.generate.kv_cache import empty_cache
from vdm.generate.modes import (block_causal_mask, chunk_bounds, chunk_ids, generation_mode,
                               sliding_window_mask)
from vdm.generate.streaming import generate_autoregressive, generate_rolling, prefill

FRAMES, CHUNK, STEPS = 6, 2, 3


def setup(randomized_dit, attention="factorized", qk_norm=False):
  model = randomized_dit(attention=attention, qk_norm=qk_norm)
  r = jax.random.split(jax.random.key(0), 2)
  noise = jax.random.normal(r[0], (2, FRAMES, 4, 4, 4))
  text = jax.random.normal(r[1], (2, 5, 16))
  mask = jnp.ones((2, 5), bool)
  return model, noise, text, mask


def cached(model, noise, text, mask, *, slots, context_level, **kw):
  cache = empty_cache(depth=2, batch_tokens=2 * 4, slots=slots, heads=4, head_dim=8)

  graphdef = nnx.graphdef(model)

  def chunk_velocity(params, x, t, cache, offset):
    return nnx.merge(graphdef, params).forward_cached(x, t, text, mask, cache, offset)

  return generate_autoregressive(chunk_velocity, nnx.state(model), noise, cache, chunk=CHUNK,
                                 steps=STEPS,
                                 context_level=context_level, **kw)


def full_matrix(model, noise, text, mask, *, context_level, temporal_mask):
  levels, _ = generation_mode("autoregressive", steps=STEPS, frames=FRAMES, chunk=CHUNK,
                              context_level=context_level)
  return euler(lambda x, t: model(x, t, text, mask, jnp.asarray(temporal_mask)), noise,
               jnp.asarray(levels))


@pytest.mark.parametrize("context_level, attention, qk_norm", [
    (0.0, "factorized", False), (0.1, "factorized", False), (0.1, "full", False),
    (0.1, "factorized", True)])
def test_cached_generation_equals_the_full_matrix(randomized_dit, context_level, attention,
                                                  qk_norm):
  model, noise, text, mask = setup(randomized_dit, attention, qk_norm)
  want = full_matrix(model, noise, text, mask, context_level=context_level,
                     temporal_mask=block_causal_mask(FRAMES, CHUNK))
  got = cached(model, noise, text, mask, slots=FRAMES, context_level=context_level)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_ring_buffer_equals_a_sliding_window_mask(randomized_dit, attention):
  model, noise, text, mask = setup(randomized_dit, attention)
  window = CHUNK  # each chunk sees only the chunk before it
  want = full_matrix(model, noise, text, mask, context_level=0.0,
                     temporal_mask=sliding_window_mask(FRAMES, CHUNK, window))
  got = cached(model, noise, text, mask, slots=window, context_level=0.0)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
  # ...and differs from attending to everything, so the window is really in effect.
  everything = cached(model, noise, text, mask, slots=FRAMES, context_level=0.0)
  assert not np.allclose(got[:, 4:], everything[:, 4:], atol=1e-3)


def test_streaming_callback_sees_each_chunk_in_order(randomized_dit):
  model, noise, text, mask = setup(randomized_dit)
  seen = []
  out = cached(model, noise, text, mask, slots=FRAMES, context_level=0.0,
               on_chunk=lambda first, x: seen.append((first, np.asarray(x))))
  assert [first for first, _ in seen] == [0, 2, 4]
  np.testing.assert_array_equal(np.concatenate([x for _, x in seen], axis=1), out)


def test_sliding_window_mask_shape():
  m = sliding_window_mask(6, 2, 2)
  assert m[5].tolist() == [False, False, True, True, True, True]
  assert m[1].tolist() == [True, True, False, False, False, False]
  np.testing.assert_array_equal(sliding_window_mask(6, 2, 6), block_causal_mask(6, 2))


def _chunk_velocity(model, text, mask):
  graphdef = nnx.graphdef(model)

  def chunk_velocity(params, x, t, cache, offset, frame_mask=None):
    return nnx.merge(graphdef, params).forward_cached(x, t, text, mask, cache, offset,
                                                      frame_mask)

  return chunk_velocity


def test_chunks_with_frame_zero_alone_equal_the_full_matrix(randomized_dit):
  """5 frames in chunks of 4 ([0], [1..4]): the cache path and the matrix agree."""
  model, noise, text, mask = setup(randomized_dit)
  noise = noise[:, :5]
  levels, temporal_mask = generation_mode("autoregressive", steps=STEPS, frames=5, chunk=4)
  want = euler(lambda x, t: model(x, t, text, mask, jnp.asarray(temporal_mask)), noise,
               jnp.asarray(levels))
  cache = empty_cache(depth=2, batch_tokens=2 * 4, slots=5, heads=4, head_dim=8)
  got = generate_autoregressive(_chunk_velocity(model, text, mask), nnx.state(model), noise,
                                cache, chunk=4, steps=STEPS)
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)


def test_extension_after_prefill_equals_the_matrix_with_pinned_context(randomized_dit):
  """Continuing given frames: prefilling the cache with them, then generating, equals one matrix
  over [given, new] whose given columns are 0 in every row, under the chunks' causal mask."""
  model, noise, text, mask = setup(randomized_dit)
  given = jax.random.normal(jax.random.key(7), (2, 2, 4, 4, 4))
  chunk_velocity = _chunk_velocity(model, text, mask)
  cache = empty_cache(depth=2, batch_tokens=2 * 4, slots=FRAMES + 2, heads=4, head_dim=8)
  cache = prefill(chunk_velocity, nnx.state(model), given, cache, chunk=CHUNK)
  got = generate_autoregressive(chunk_velocity, nnx.state(model), noise, cache, chunk=CHUNK,
                                steps=STEPS, first_frame=2)

  new_levels, _ = generation_mode("autoregressive", steps=STEPS, frames=FRAMES, chunk=CHUNK)
  levels = np.concatenate([np.zeros((len(new_levels), 2), np.float32), new_levels], axis=1)
  ids = np.concatenate([chunk_ids(2, CHUNK), 1 + chunk_ids(FRAMES, CHUNK)])
  temporal_mask = jnp.asarray(ids[None, :] <= ids[:, None])
  want = euler(lambda x, t: model(x, t, text, mask, temporal_mask),
               jnp.concatenate([given, noise], axis=1), jnp.asarray(levels))
  np.testing.assert_array_equal(want[:, :2], given)
  np.testing.assert_allclose(got, want[:, 2:], atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("frames, chunk, window, context_level, sampler, attention", [
    (9, 1, 2, 0.0, "euler", "factorized"),   # many chunks in flight, a window of 2 frames
    (9, 2, 4, 0.1, "heun", "factorized"),     # frame 0 alone, then pairs; noisy context
    (7, 2, 3, 0.1, "euler", "full"),         # a window that cuts through a chunk
])
def test_rolling_stream_equals_the_matrix(randomized_dit, frames, chunk, window, context_level,
                                          sampler, attention):
  """The rolling matrix run as a stream (chunks in flight as one window, finished chunks in a
  ring buffer of `window` frames) equals the matrix sampler over the whole clip under the
  sliding-window mask; each chunk is emitted once, in order, with its final frames."""
  from vdm.diffusion.samplers import sample
  model = randomized_dit(attention=attention)
  r = jax.random.split(jax.random.key(2), 2)
  noise = jax.random.normal(r[0], (1, frames, 4, 4, 4))
  text, mask = jax.random.normal(r[1], (1, 5, 16)), jnp.ones((1, 5), bool)
  levels, temporal_mask = generation_mode("rolling", steps=STEPS, frames=frames, chunk=chunk,
                                          context_level=context_level, shift=2.0, window=window)
  want = sample(sampler, lambda x, t: model(x, t, text, mask, jnp.asarray(temporal_mask)),
                noise, jnp.asarray(levels))
  cache = empty_cache(depth=2, batch_tokens=4, slots=window, heads=4, head_dim=8)
  seen = []
  got = generate_rolling(_chunk_velocity(model, text, mask), nnx.state(model), noise, cache,
                         chunk=chunk, steps=STEPS, window=window, context_level=context_level,
                         shift=2.0, sampler=sampler,
                         on_chunk=lambda first, x: seen.append((first, np.asarray(x))))
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
  assert [first for first, _ in seen] == [start for start, _ in chunk_bounds(frames, chunk)]
  np.testing.assert_array_equal(np.concatenate([x for _, x in seen], axis=1), got)


def test_rolling_stream_refuses_multistep_samplers(randomized_dit):
  model = randomized_dit()
  cache = empty_cache(depth=2, batch_tokens=4, slots=2, heads=4, head_dim=8)
  with pytest.raises(ValueError, match="history"):
    generate_rolling(_chunk_velocity(model, None, None), nnx.state(model),
                     jnp.zeros((1, 5, 4, 4, 4)), cache, chunk=1, steps=2, window=2,
                     sampler="unipc")
