"""Tokenizer round trips and T5 encoder properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.text.encoder import T5Encoder, relative_position_buckets
from vdm.text.tokenizer import EOS_ID, PAD_ID, Tokenizer, train_tokenizer

CORPUS = [f"a {c} {s} moving {d} on a {b} background" for c in ("red", "green", "blue", "white")
          for s in ("circle", "square", "triangle") for d in ("left", "right", "up", "down")
          for b in ("yellow", "magenta", "blue")]


@pytest.fixture(scope="module")
def tokenizer():
  return Tokenizer(train_tokenizer(CORPUS, vocab_size=64))


def test_round_trip_and_special_ids(tokenizer, tmp_path):
  texts = ["a red circle moving left on a yellow background", "a white square moving up"]
  ids, mask = tokenizer.encode(texts, max_length=48)
  assert ids.dtype == np.int32 and ids.shape == (2, 48)
  assert tokenizer.decode(ids) == texts
  for row, m in zip(ids, mask):
    n = int(m.sum())
    assert row[n - 1] == EOS_ID and np.all(row[n:] == PAD_ID) and np.all(row[: n - 1] > 2)
  path = tmp_path / "tok.model"
  tokenizer.save(str(path))
  again = Tokenizer.load(str(path))
  np.testing.assert_array_equal(again.encode(texts, 48)[0], ids)


def test_empty_unknown_and_truncation(tokenizer):
  ids, mask = tokenizer.encode([""], 8)
  assert ids[0, 0] == EOS_ID and mask[0].sum() == 1
  long_ids, long_mask = tokenizer.encode([" ".join(CORPUS[:5])], 8)
  assert long_mask.all() and long_ids[0, -1] == EOS_ID
  # Non-Latin text the tokenizer never saw maps to pieces (unk allowed), never a crash.
  ids, _ = tokenizer.encode(["красный круг 赤い丸"], 16)
  assert ids[0].max() < tokenizer.vocab_size
  with pytest.raises(FileNotFoundError):
    Tokenizer.load("/nonexistent/tok.model")


def test_relative_buckets_are_symmetric_in_magnitude_and_bounded():
  rel = jnp.arange(-200, 201)
  buckets = relative_position_buckets(rel, num_buckets=32, max_distance=128)
  assert int(buckets.min()) >= 0 and int(buckets.max()) < 32
  assert int(buckets[200]) == 0  # offset 0
  # Same distance, opposite direction -> different halves.
  assert int(buckets[200 + 3]) == int(buckets[200 - 3]) + 16


def test_encoder_ignores_padding():
  """Outputs at real tokens must not depend on what sits in padded positions."""
  enc = T5Encoder(vocab_size=50, width=32, depth=2, heads=4, mlp=64, rngs=nnx.Rngs(0))
  ids = jnp.array([[5, 6, 7, 1, 0, 0]])
  mask = ids != 0
  noisy = ids.at[0, 4:].set(jnp.array([9, 11]))
  a, b = enc(ids, mask), enc(noisy, mask)
  np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-5)
  c = enc(ids.at[0, 1].set(8), mask)
  assert not np.allclose(a[:, 0], c[:, 0])


def test_caption_tokenizer_learns_whole_words():
  """On the spine's repetitive captions the tokenizer must learn words, not characters: a
  character-level vocabulary (what unigram collapsed to) made captions ~30 tokens long and
  truncated them at the encoder's limit."""
  from vdm.data import simple
  corpus = simple.caption_corpus(0, 4000)
  tokenizer = Tokenizer(train_tokenizer(corpus, vocab_size=256))
  for caption in corpus[:100]:
    assert tokenizer.num_pieces(caption) <= len(caption.split()) + 2, caption
  with pytest.raises(ValueError, match="model_type"):
    train_tokenizer(corpus, model_type="sentencepiece")
