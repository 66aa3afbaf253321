"""The text encoder's weights in the T5 checkpoint layout (Hugging Face names), as .npz.

    save_t5_weights(encoder, "t5.npz")      # what a T5 v1.1 encoder checkpoint holds
    load_t5_weights(encoder, "t5.npz")      # e.g. weights converted from a published T5

Names and shapes follow T5 v1.1's encoder: `shared.weight` [vocab, d_model]; per block i
`encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight` [out, in] (torch Linear layout),
`...layer.0.layer_norm.weight`, `...layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight` (gated GELU:
wi_0 the gate, wi_1 the linear branch), `...layer.1.layer_norm.weight`; the relative position
bias on block 0 only (`...relative_attention_bias.weight` [buckets, heads]); and
`encoder.final_layer_norm.weight`. Here q/k/v are one fused matmul and the gate/linear branches
another, so loading splits nothing and saving concatenates nothing: the mapping does both ways.
Files load with `allow_pickle=False`: a weights file can never execute code.
"""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.text.encoder import T5Encoder


def _block(i: int) -> str:
  return f"encoder.block.{i}.layer"


def t5_arrays(encoder: T5Encoder, vocab_size: int | None = None) -> dict[str, np.ndarray]:
  """The encoder's parameters under T5 names (float32 numpy, torch [out, in] kernels).

  vocab_size: keep only the first rows of the embedding (e.g. drop the span-corruption
  sentinels a pretraining encoder has after the tokenizer's pieces); None keeps all.
  """
  out = {"shared.weight": np.asarray(encoder.embed.embedding[...])[:vocab_size],
         f"{_block(0)}.0.SelfAttention.relative_attention_bias.weight":
             np.asarray(encoder.rel_bias.embedding[...]),
         "encoder.final_layer_norm.weight": np.asarray(encoder.final_norm.scale[...])}
  for i, layer in enumerate(encoder.layers):
    b = _block(i)
    q, k, v = np.split(np.asarray(layer.qkv.kernel[...]), 3, axis=1)
    gate, up = np.split(np.asarray(layer.wi.kernel[...]), 2, axis=1)
    out.update({
        f"{b}.0.SelfAttention.q.weight": q.T, f"{b}.0.SelfAttention.k.weight": k.T,
        f"{b}.0.SelfAttention.v.weight": v.T,
        f"{b}.0.SelfAttention.o.weight": np.asarray(layer.out.kernel[...]).T,
        f"{b}.0.layer_norm.weight": np.asarray(layer.attn_norm.scale[...]),
        f"{b}.1.DenseReluDense.wi_0.weight": gate.T, f"{b}.1.DenseReluDense.wi_1.weight": up.T,
        f"{b}.1.DenseReluDense.wo.weight": np.asarray(layer.wo.kernel[...]).T,
        f"{b}.1.layer_norm.weight": np.asarray(layer.mlp_norm.scale[...])})
  return out


def save_t5_weights(encoder: T5Encoder, path: str, vocab_size: int | None = None) -> None:
  """Writes the encoder as a T5-layout .npz (atomically); vocab_size as in `t5_arrays`."""
  partial = path + ".partial.npz"
  np.savez(partial, **t5_arrays(encoder, vocab_size))
  os.replace(partial, path)


def load_t5_weights(encoder: T5Encoder, path: str) -> T5Encoder:
  """Loads T5-layout weights into `encoder` (in place; also returned).

  Raises ValueError naming every missing, unexpected or wrongly shaped array, before changing
  anything (e.g. a checkpoint for another width, depth or vocabulary).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no T5 weights file at {path!r}")
  with np.load(path, allow_pickle=False) as f:
    given = {k: f[k] for k in f.files}
  wanted = t5_arrays(encoder)
  # Shape mismatches first: they say which dimension differs (width, vocabulary, ...).
  problems = [f"{k}: file {given[k].shape} vs model {v.shape}" for k, v in wanted.items()
              if k in given and given[k].shape != v.shape]
  problems += [f"missing {k} {v.shape}" for k, v in wanted.items() if k not in given]
  problems += [f"unexpected {k}" for k in given if k not in wanted]
  if problems:
    raise ValueError(f"{path}: not this encoder's T5 layout ({len(problems)} problems): "
                     f"{problems[:8]}")
  set_ = lambda var, value: var.set_value(jnp.asarray(value, var[...].dtype))  # noqa: E731
  set_(encoder.embed.embedding, given["shared.weight"])
  set_(encoder.rel_bias.embedding,
       given[f"{_block(0)}.0.SelfAttention.relative_attention_bias.weight"])
  set_(encoder.final_norm.scale, given["encoder.final_layer_norm.weight"])
  for i, layer in enumerate(encoder.layers):
    b = _block(i)
    attn = lambda n: given[f"{b}.0.SelfAttention.{n}.weight"].T  # noqa: E731
    mlp = lambda n: given[f"{b}.1.DenseReluDense.{n}.weight"].T  # noqa: E731
    set_(layer.qkv.kernel, np.concatenate([attn("q"), attn("k"), attn("v")], axis=1))
    set_(layer.out.kernel, attn("o"))
    set_(layer.attn_norm.scale, given[f"{b}.0.layer_norm.weight"])
    set_(layer.wi.kernel, np.concatenate([mlp("wi_0"), mlp("wi_1")], axis=1))
    set_(layer.wo.kernel, mlp("wo"))
    set_(layer.mlp_norm.scale, given[f"{b}.1.layer_norm.weight"])
  return encoder
