"""T5 span corruption as pure functions of token ids (the text encoder's pretraining objective).

    ids    a red circle moving left on a blue background </s>
    inputs a red circle <s0> left on a blue <s1> </s>
    targets <s0> moving <s1> background </s>

Per row, of the n real tokens before the eos, `k = round(n * noise_density)` (at least 1, at most
n - 1) are replaced in `s = round(k / mean_span_length)` spans, as in T5's
`random_spans_noise_mask`: the k noise tokens are cut into s non-empty spans at random, and the
n - k kept tokens into the s + 1 gaps around them. Rounding is T5's (half to even), so short rows
corrupt slightly more or less than the density; over long rows the fraction is the density and
the mean span length is `mean_span_length`.

One change from T5: there the kept tokens are cut into s non-empty segments that come first, so a
row always ends in noise, and a caption short enough for one span (every caption here) always
loses its last words. (T5's `random_roll` option rolls the mask instead, which can split a span
across the row's end.) Here the gaps before the first span and after the last may be empty, so
the spans sit anywhere, uniformly, and never wrap.

Sentinels. The pretraining model's vocabulary is the tokenizer's `vocab_size` pieces plus
`num_sentinels` extra ids *after* them, numbered as T5 numbers `<extra_id_k>`: from the top down,
`sentinel_id(k) = vocab_size + num_sentinels - 1 - k`. Appending (rather than reserving pieces
inside the sentencepiece model) leaves every existing tokenizer id as it was, so tokenizers and
checkpoints already shipped still load; the text-to-video model never sees a sentinel, and the
exported encoder simply drops those embedding rows (`vdm.text.t5_weights.save_t5_weights`).

The randomness is a jax PRNG key, so the corruption runs inside the jitted training step on the
loop's `fold_in(seed, step)` key: the same step corrupts the same way after a resume.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vdm.text.tokenizer import EOS_ID, PAD_ID


def sentinel_id(k, *, vocab_size: int, num_sentinels: int):
  """The id of T5's `<extra_id_k>`: k = 0 is the highest id of the extended vocabulary."""
  return vocab_size + num_sentinels - 1 - k


def span_counts(num_tokens, noise_density: float, mean_span_length: float):
  """(noise tokens k, noise spans s) for rows of `num_tokens` maskable tokens (int arrays, any
  shape). Rows with fewer than 2 tokens get no noise: a span needs a kept token beside it."""
  n = jnp.asarray(num_tokens, jnp.int32)
  k = jnp.round(n.astype(jnp.float32) * noise_density).astype(jnp.int32)
  k = jnp.where(n >= 2, jnp.clip(k, 1, n - 1), 0)
  s = jnp.round(k.astype(jnp.float32) / mean_span_length).astype(jnp.int32)
  # Each of the s kept segments must be non-empty too, hence s <= n - k.
  s = jnp.where(k >= 1, jnp.clip(s, 1, jnp.minimum(k, n - k)), 0)
  return k, s


def max_noise_spans(max_length: int, noise_density: float, mean_span_length: float) -> int:
  """The most spans any row of `max_length` ids (eos included) can get: sentinels needed."""
  _, s = span_counts(np.arange(max_length), noise_density, mean_span_length)
  return int(np.max(np.asarray(s)))


def random_segmentation(key: jax.Array, num_items, num_segments, size: int) -> jax.Array:
  """Lengths [size] of `num_segments` non-empty segments that `num_items` items are cut into,
  uniformly over the ways to cut (zeros after the last segment; all zeros if num_items is 0).

  The cuts are the `num_segments - 1` positions among 1..num_items-1 with the smallest uniform
  scores: a random subset of fixed size with static shapes, so it works under jit and vmap.
  """
  idx = jnp.arange(size)
  can_cut = (idx >= 1) & (idx < num_items)
  score = jnp.where(can_cut, jax.random.uniform(key, (size,)), 2.0)
  rank = jnp.argsort(jnp.argsort(score))
  starts = ((idx == 0) | (can_cut & (rank < num_segments - 1))) & (idx < num_items)
  segment = jnp.where(idx < num_items, jnp.cumsum(starts) - 1, size)
  return jnp.zeros((size,), jnp.int32).at[segment].add(1, mode="drop")


def noise_mask(key: jax.Array, num_tokens, size: int, *, noise_density: float,
               mean_span_length: float) -> jax.Array:
  """bool [size]: which of the first `num_tokens` positions are noise (one row)."""
  k, s = span_counts(num_tokens, noise_density, mean_span_length)
  noise_key, kept_key = jax.random.split(key)
  noise_lengths = random_segmentation(noise_key, k, s, size + 2)
  # s + 1 gaps, the outer two possibly empty: cut n - k + 2 items into non-empty segments and
  # take one back from each end (for s = 0 both ends are segment 0: all n kept).
  kept_lengths = random_segmentation(kept_key, num_tokens - k + 2, s + 1, size + 2)
  kept_lengths = kept_lengths.at[0].add(-1).at[s].add(-1)
  # kept_0, noise_0, kept_1, ..., noise_{s-1}, kept_s: a position is noise when an odd number
  # of those segments end at or before it.
  ends = jnp.cumsum(jnp.stack([kept_lengths, noise_lengths], axis=1).reshape(-1))
  pos = jnp.arange(size)
  return (jnp.searchsorted(ends, pos, side="right") % 2 == 1) & (pos < num_tokens)


def corrupt_row(ids: jax.Array, noise: jax.Array, *, vocab_size: int,
                num_sentinels: int) -> tuple[jax.Array, jax.Array]:
  """One row: ids int [L] (eos then padding) and its noise mask [L] -> (inputs [L], targets [L]).

  Inputs keep the non-noise tokens and put sentinel j where span j was; targets are
  `<s0> span0 <s1> span1 ... </s>`. Both are right-padded with PAD_ID; they fit in L because a
  row with k noise tokens in s spans needs n - k + s + 1 and k + s + 1 ids, s <= min(k, n - k).
  """
  length = ids.shape[0]
  previous = jnp.concatenate([jnp.zeros((1,), bool), noise[:-1]])
  starts = noise & ~previous
  sentinel = sentinel_id(jnp.cumsum(starts) - 1, vocab_size=vocab_size,
                         num_sentinels=num_sentinels).astype(ids.dtype)
  keep = ~noise | starts
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, length)
  inputs = jnp.full_like(ids, PAD_ID).at[slot].set(jnp.where(starts, sentinel, ids), mode="drop")
  # Each noise token takes one target slot, and the first of a span one more for its sentinel.
  end = jnp.cumsum(noise.astype(jnp.int32) + starts)
  targets = jnp.full_like(ids, PAD_ID)
  targets = targets.at[jnp.where(noise, end - 1, length)].set(ids, mode="drop")
  targets = targets.at[jnp.where(starts, end - 2, length)].set(sentinel, mode="drop")
  targets = targets.at[end[-1]].set(EOS_ID, mode="drop")
  return inputs, targets


def span_corrupt(key: jax.Array, ids: jax.Array, mask: jax.Array, *, vocab_size: int,
                 num_sentinels: int, noise_density: float = 0.15,
                 mean_span_length: float = 3.0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Corrupts a batch of tokenizer output.

  Args:
    key: PRNG key; each row gets its own split, so a row's corruption depends on (key, row).
    ids: int32 [B, L], each row `pieces..., eos, pad...` (`Tokenizer.encode`).
    mask: bool [B, L], True on pieces and eos.
  Returns:
    inputs int32 [B, L] (sentinels in place of spans), targets int32 [B, L]
    (`<s0> span0 <s1> span1 ... </s>`, right-padded), and the noise mask bool [B, L] over `ids`.
  """
  batch, length = ids.shape
  num_tokens = jnp.sum(mask, axis=1) - 1  # the eos is never noise
  noise = jax.vmap(lambda k, n: noise_mask(k, n, length, noise_density=noise_density,
                                           mean_span_length=mean_span_length))(
      jax.random.split(key, batch), num_tokens)
  inputs, targets = jax.vmap(lambda i, m: corrupt_row(
      i, m, vocab_size=vocab_size, num_sentinels=num_sentinels))(ids, noise)
  return inputs, targets, noise


def shift_right(targets: jax.Array) -> jax.Array:
  """Teacher-forcing decoder inputs [B, L]: PAD_ID (T5's decoder start id), then targets[:-1]."""
  return jnp.concatenate([jnp.full_like(targets[:, :1], PAD_ID), targets[:, :-1]], axis=1)


def restore_spans(inputs: np.ndarray, targets: np.ndarray, *, vocab_size: int) -> list[list[int]]:
  """Inverse of the corruption (numpy, for tests and inspection): each row's original ids up to
  and including the eos, with every sentinel in `inputs` replaced by the span that follows the
  same sentinel in `targets`."""
  rows = []
  for row_in, row_out in zip(np.asarray(inputs), np.asarray(targets)):
    spans, current = {}, None
    for t in row_out:
      if t >= vocab_size:
        current = int(t)
        spans[current] = []
      elif t in (EOS_ID, PAD_ID):
        break
      else:
        spans[current].append(int(t))
    out = []
    for t in row_in:
      if t == PAD_ID:
        break
      out.extend(spans[int(t)] if t >= vocab_size else [int(t)])
    rows.append(out)
  return rows
