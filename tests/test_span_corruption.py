"""T5 span corruption: properties that would fail if the masking or the bookkeeping were wrong."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm.text.span_corruption import (max_noise_spans, random_segmentation, restore_spans,
                                      sentinel_id, shift_right, span_corrupt, span_counts)
from vdm.text.tokenizer import EOS_ID, PAD_ID

VOCAB, SENTINELS = 100, 40


def token_batch(seed, batch, length, min_tokens=0):
  """Tokenizer-shaped rows: random pieces in [3, VOCAB), eos, padding; mask on pieces + eos."""
  rng = np.random.default_rng(seed)
  n = rng.integers(min_tokens, length, batch)  # pieces before the eos
  ids = rng.integers(3, VOCAB, (batch, length)).astype(np.int32)
  pos = np.arange(length)[None]
  ids = np.where(pos < n[:, None], ids, PAD_ID)
  ids[np.arange(batch), n] = EOS_ID
  return jnp.asarray(ids), jnp.asarray(ids != PAD_ID), n


@functools.partial(jax.jit, static_argnames=("noise_density", "mean_span_length"))
def _corrupt(key, ids, mask, noise_density, mean_span_length):
  return span_corrupt(key, ids, mask, vocab_size=VOCAB, num_sentinels=SENTINELS,
                      noise_density=noise_density, mean_span_length=mean_span_length)


def corrupt(ids, mask, seed=0, noise_density=0.15, mean_span_length=3.0):
  """Jitted: eager dispatch of the many small ops would dominate the test's time."""
  return _corrupt(jax.random.key(seed), ids, mask, noise_density, mean_span_length)


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.5, 2.0), (0.3, 1.0), (0.8, 5.0)])
def test_inputs_and_targets_reconstruct_the_original(density, mean):
  ids, mask, n = token_batch(0, 64, 40)
  inputs, targets, _ = corrupt(ids, mask, noise_density=density, mean_span_length=mean)
  restored = restore_spans(inputs, targets, vocab_size=VOCAB)
  for row, original, k in zip(restored, np.asarray(ids), n):
    assert row == list(original[: k + 1])


def test_corrupted_fraction_and_mean_span_length_match_the_config():
  ids, mask, n = token_batch(1, 256, 400, min_tokens=200)
  for density, mean in ((0.15, 3.0), (0.3, 5.0)):
    _, _, noise = corrupt(ids, mask, noise_density=density, mean_span_length=mean)
    noise = np.asarray(noise)
    assert abs(noise.sum() / n.sum() - density) < 0.005
    starts = noise & ~np.pad(noise, ((0, 0), (1, 0)))[:, :-1]
    assert abs(noise.sum() / starts.sum() - mean) < 0.05 * mean
    # T5's counts exactly, row by row (rounding included).
    k, s = (np.asarray(a) for a in span_counts(n, density, mean))
    np.testing.assert_array_equal(noise.sum(1), k)
    np.testing.assert_array_equal(starts.sum(1), s)


def test_short_rows_follow_t5_rounding():
  k, s = (np.asarray(a) for a in span_counts(np.arange(12), 0.15, 3.0))
  np.testing.assert_array_equal(k, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2])  # round(n * 0.15) >= 1
  np.testing.assert_array_equal(s, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
  assert max_noise_spans(24, 0.15, 3.0) == 1 and max_noise_spans(512, 0.15, 3.0) == 26


def test_sentinels_are_in_order_and_padding_is_untouched():
  ids, mask, n = token_batch(2, 64, 48)
  inputs, targets, noise = corrupt(ids, mask, noise_density=0.4, mean_span_length=2.0)
  inputs, targets, noise = (np.asarray(a) for a in (inputs, targets, noise))
  for row_in, row_out, row_noise, k in zip(inputs, targets, noise, n):
    assert not row_noise[k:].any()  # eos and padding are never noise
    spans = int(row_noise.sum() and (np.diff(np.r_[0, row_noise.astype(int)]) == 1).sum())
    expected = [sentinel_id(j, vocab_size=VOCAB, num_sentinels=SENTINELS) for j in range(spans)]
    assert [t for t in row_in if t >= VOCAB] == expected
    assert [t for t in row_out if t >= VOCAB] == expected
    for row in (row_in, row_out):  # one eos, then only padding
      length = int(np.sum(row != PAD_ID))
      assert row[length - 1] == EOS_ID and np.all(row[length:] == PAD_ID)
      assert np.sum(row == EOS_ID) == 1
    if spans:
      assert row_out[0] == expected[0]
  assert sentinel_id(0, vocab_size=VOCAB, num_sentinels=SENTINELS) == VOCAB + SENTINELS - 1


def test_deterministic_per_key_and_same_under_jit():
  ids, mask, _ = token_batch(3, 16, 32, min_tokens=10)
  a = corrupt(ids, mask, seed=5)
  for x, y in zip(a, corrupt(ids, mask, seed=5)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[2], corrupt(ids, mask, seed=6)[2])
  small_ids, small_mask, _ = token_batch(3, 2, 12, min_tokens=8)
  with jax.disable_jit():  # op by op: slow, so a small batch
    eager = span_corrupt(jax.random.key(5), small_ids, small_mask, vocab_size=VOCAB,
                         num_sentinels=SENTINELS)
  for x, y in zip(corrupt(small_ids, small_mask, seed=5), eager):
    np.testing.assert_array_equal(x, y)


def test_random_segmentation_cuts_into_non_empty_segments():
  for seed, (items, segments) in enumerate([(10, 3), (7, 7), (5, 1), (0, 0), (20, 4)]):
    lengths = np.asarray(random_segmentation(jax.random.key(seed), items, segments, 24))
    assert lengths.sum() == items and np.all(lengths[:segments] >= 1)
    assert np.all(lengths[segments:] == 0)
  # Uniform over cuts: with 4 items in 2 segments, the first is 1, 2 or 3 long equally often.
  firsts = jax.jit(jax.vmap(lambda k: random_segmentation(k, 4, 2, 8)[0]))(
      jax.random.split(jax.random.key(0), 3000))
  counts = np.bincount(np.asarray(firsts), minlength=4)[1:]
  assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04), counts


def test_shift_right_starts_with_pad():
  targets = jnp.array([[7, 8, 1, 0]])
  np.testing.assert_array_equal(shift_right(targets), [[PAD_ID, 7, 8, 1]])


def test_a_lone_span_can_sit_anywhere():
  """T5's default puts a row's only span at its end; here every place is equally likely."""
  ids, mask, _ = token_batch(4, 1, 12, min_tokens=10)
  n = int(mask.sum()) - 1
  starts = jax.jit(jax.vmap(lambda key: jnp.argmax(span_corrupt(
      key, ids, mask, vocab_size=VOCAB, num_sentinels=SENTINELS)[2][0])))(
      jax.random.split(jax.random.key(0), 2000))
  k = int(np.asarray(span_counts(n, 0.15, 3.0)[0]))
  counts = np.bincount(np.asarray(starts), minlength=n - k + 1)
  assert len(counts) == n - k + 1  # never past the last token
  assert np.all(np.abs(counts / 2000 - 1 / (n - k + 1)) < 0.035), counts
