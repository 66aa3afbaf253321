"""Span-corruption pretraining of the text encoder: the loss, the exported encoder, and loading it
into the text-to-video model.

The training itself is a stage of `vdm train` (`vdm.train.run.text_pretrain_stage`) through the
one loop. What it leaves behind is an encoder directory:

    tokenizer.model   the tokenizer the encoder was trained with (its ids are the encoder's rows)
    t5.npz            the encoder in T5 layout (`vdm.text.t5_weights`), sentinel rows dropped
    config.json       the `text` and `text_pretrain` config sections, for the record

`text.init_from=DIR` (or a T5-layout .npz) starts the denoiser's text encoder from it.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vdm.text.decoder import SpanCorruptionModel
from vdm.text.encoder import T5Encoder
from vdm.text.span_corruption import shift_right, span_corrupt
from vdm.text.t5_weights import load_t5_weights, save_t5_weights
from vdm.text.tokenizer import EOS_ID, PAD_ID, Tokenizer

WEIGHTS_FILE, TOKENIZER_FILE = "t5.npz", "tokenizer.model"


def span_corruption_loss(model: SpanCorruptionModel, batch: dict, rng: jax.Array, *,
                         vocab_size: int, num_sentinels: int, noise_density: float,
                         mean_span_length: float) -> tuple[jax.Array, dict]:
  """Teacher-forced cross-entropy of the span-corruption targets.

  Args:
    batch: 'ids' int32 [B, L] and 'mask' bool [B, L], the tokenizer's output for the captions.
    rng: the step's key; it picks the spans.
    vocab_size: the tokenizer's; sentinels are the `num_sentinels` ids after it.
  Returns:
    (mean cross-entropy per target token, metrics): token_accuracy over every target token
    (sentinels and eos included, as T5 reports it), span_accuracy over the corrupted tokens only
    (the part that needs the context), noise_fraction of the maskable tokens corrupted.
  """
  inputs, targets, noise = span_corrupt(
      rng, batch["ids"], batch["mask"], vocab_size=vocab_size, num_sentinels=num_sentinels,
      noise_density=noise_density, mean_span_length=mean_span_length)
  logits = model(inputs, inputs != PAD_ID, shift_right(targets))
  weight = (targets != PAD_ID).astype(jnp.float32)
  loss = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, targets) * weight)
  loss = loss / jnp.maximum(jnp.sum(weight), 1.0)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  span = weight * (targets < vocab_size) * (targets != EOS_ID)
  maskable = jnp.maximum(jnp.sum(batch["mask"]) - batch["mask"].shape[0], 1)
  return loss, dict(
      token_accuracy=jnp.sum(correct * weight) / jnp.maximum(jnp.sum(weight), 1.0),
      span_accuracy=jnp.sum(correct * span) / jnp.maximum(jnp.sum(span), 1.0),
      noise_fraction=jnp.sum(noise) / maskable)


def evaluate_span_corruption(model: SpanCorruptionModel, tokenizer: Tokenizer,
                             captions: list[str], *, max_length: int, seed: int = 0,
                             batch_size: int = 256, **loss_kwargs) -> dict:
  """Loss and accuracies of `model` on `captions`, batch i corrupted with `fold_in(key(seed), i)`
  (the same spans for every model evaluated); metrics averaged over batches weighted by their
  captions. loss_kwargs: those of `span_corruption_loss` but `rng`."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def metrics_of(state, batch, key):
    loss, metrics = span_corruption_loss(nnx.merge(graphdef, state), batch, key, **loss_kwargs)
    return dict(metrics, loss=loss)

  totals, count = {}, 0
  for i in range(0, len(captions), batch_size):
    ids, mask = tokenizer.encode(captions[i:i + batch_size], max_length)
    metrics = metrics_of(state, dict(ids=ids, mask=mask),
                         jax.random.fold_in(jax.random.key(seed), i // batch_size))
    for name, value in metrics.items():
      totals[name] = totals.get(name, 0.0) + float(value) * len(ids)
    count += len(ids)
  return {name: value / max(count, 1) for name, value in totals.items()}


def build_pretrain_model(config, vocab_size: int, seed: int = 0) -> SpanCorruptionModel:
  """The encoder-decoder for a config; `vocab_size` is the tokenizer's."""
  return SpanCorruptionModel.from_config(config, vocab_size=vocab_size, rngs=nnx.Rngs(seed))


def export_encoder(directory: str, encoder: T5Encoder, tokenizer: Tokenizer, config) -> str:
  """Writes the encoder directory (module docstring) with the first `tokenizer.vocab_size`
  embedding rows; returns the directory."""
  os.makedirs(directory, exist_ok=True)
  save_t5_weights(encoder, os.path.join(directory, WEIGHTS_FILE),
                  vocab_size=tokenizer.vocab_size)
  tokenizer.save(os.path.join(directory, TOKENIZER_FILE))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(dict(text=config.text.to_dict(), text_pretrain=config.text_pretrain.to_dict()), f,
              indent=2)
  return directory


def init_paths(init_from: str) -> tuple[str, str | None]:
  """(T5-layout .npz, tokenizer.model or None) of `text.init_from`: an encoder directory or a
  bare .npz (whose tokenizer the user vouches for)."""
  if os.path.isdir(init_from):
    weights = os.path.join(init_from, WEIGHTS_FILE)
    if not os.path.isfile(weights):
      raise FileNotFoundError(f"text.init_from={init_from!r}: no {WEIGHTS_FILE} in it (an "
                              "encoder directory is written by `vdm train --until text`)")
    tokenizer = os.path.join(init_from, TOKENIZER_FILE)
    return weights, tokenizer if os.path.isfile(tokenizer) else None
  if not os.path.isfile(init_from):
    raise FileNotFoundError(f"text.init_from={init_from!r}: no such file or directory")
  return init_from, None


def init_text_encoder(encoder: T5Encoder, init_from: str) -> T5Encoder:
  """Loads pretrained weights into the text-to-video model's encoder (in place; returned).

  Raises ValueError naming every array whose shape differs (another width, depth or tokenizer).
  """
  return load_t5_weights(encoder, init_paths(init_from)[0])
