"""A sentencepiece tokenizer with T5's special ids (pad 0, eos 1, unk 2; no bos).

Trained on the project's own captions (nothing is downloaded); the serialized model is a few KB
and is stored beside every checkpoint as `tokenizer.model`.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


MODEL_TYPES = ("bpe", "unigram", "word", "char")


def train_tokenizer(sentences: Iterable[str], *, vocab_size: int = 256,
                    model_type: str = "bpe") -> bytes:
  """Trains a sentencepiece model on `sentences` and returns its serialized proto.

  BPE by default: on a small, highly repetitive caption corpus (a few thousand distinct
  sentences) sentencepiece's unigram EM collapsed to 40 character-level pieces, so a caption took
  ~30 tokens and was truncated, while BPE learns the words (9 pieces per caption).
  """
  if model_type not in MODEL_TYPES:
    raise ValueError(f"tokenizer model_type must be one of {MODEL_TYPES}, got {model_type!r}")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(sentences)), model_writer=model, vocab_size=vocab_size,
      model_type=model_type, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      # Small caption corpora have fewer pieces than the requested vocabulary.
      hard_vocab_limit=False, character_coverage=1.0, minloglevel=2)
  return model.getvalue()


class Tokenizer:
  """Encodes text to fixed-length T5-style id arrays and back."""

  def __init__(self, model_proto: bytes):
    self.model_proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

  @classmethod
  def load(cls, path: str) -> "Tokenizer":
    if not os.path.isfile(path):
      raise FileNotFoundError(f"tokenizer model not found: {path}")
    with open(path, "rb") as f:
      return cls(f.read())

  def save(self, path: str) -> None:
    with open(path, "wb") as f:
      f.write(self.model_proto)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns ids int32 [B, max_length] (ending in eos, right-padded with 0) and mask bool [B, L].

    Longer texts are truncated to max_length - 1 pieces so the eos is always present.
    """
    ids = np.full((len(texts), max_length), PAD_ID, np.int32)
    for i, text in enumerate(texts):
      pieces = self._sp.encode(text)[: max_length - 1] + [EOS_ID]
      ids[i, : len(pieces)] = pieces
    return ids, ids != PAD_ID

  def num_pieces(self, text: str) -> int:
    """How many ids `text` needs before the eos (to warn about truncation)."""
    return len(self._sp.encode(text))

  def decode(self, ids: np.ndarray) -> list[str]:
    """Inverse of encode for ids [B, L]: stops at the first eos, drops padding."""
    out = []
    for row in np.asarray(ids):
      row = [int(i) for i in row]
      if EOS_ID in row:
        row = row[: row.index(EOS_ID)]
      out.append(self._sp.decode([i for i in row if i != PAD_ID]))
    return out
