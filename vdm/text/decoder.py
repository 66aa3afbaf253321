"""A small T5-style decoder, used only to pretrain the text encoder by span corruption.

The decoder is T5 v1.1's: pre-RMSNorm blocks of causal self-attention (with a unidirectional
relative position bias shared by all layers), cross-attention to the encoder output (no position
bias, as in T5), and a gated-GELU feed-forward; no biases. `SpanCorruptionModel` puts it behind
the ordinary `T5Encoder`, sharing the encoder's token embedding for the decoder's inputs (T5's
`shared`), with an output head that is either that embedding (tied, T5 v1.0) or its own matrix
(untied, T5 v1.1). After pretraining only `model.encoder` is kept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.nn import RMSNorm
from vdm.parallel.sharding import constrain, logical_axes
from vdm.text.encoder import T5Encoder, gated_gelu, multi_head_attention, position_bias


def _linear(din: int, dout: int, axes: tuple[str, str], rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(din, dout, use_bias=False, rngs=rngs, kernel_metadata=logical_axes(*axes))


class T5DecoderLayer(nnx.Module):
  def __init__(self, width: int, heads: int, mlp: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.self_norm = RMSNorm(width)
    self.self_qkv = _linear(width, 3 * width, ("embed", "heads"), rngs)
    self.self_out = _linear(width, width, ("heads", "embed"), rngs)
    self.cross_norm = RMSNorm(width)
    self.cross_q = _linear(width, width, ("embed", "heads"), rngs)
    self.cross_kv = _linear(width, 2 * width, ("embed", "heads"), rngs)
    self.cross_out = _linear(width, width, ("heads", "embed"), rngs)
    self.mlp_norm = RMSNorm(width)
    self.wi = _linear(width, 2 * mlp, ("embed", "mlp"), rngs)
    self.wo = _linear(mlp, width, ("mlp", "embed"), rngs)

  def __call__(self, x, self_bias, memory, cross_bias):
    """x [B, Lt, D]; self_bias [1, heads, Lt, Lt] (positions + causal mask); memory [B, Ls, D];
    cross_bias [B, 1, 1, Ls] (encoder padding mask)."""
    q, k, v = jnp.split(self.self_qkv(self.self_norm(x)), 3, axis=-1)
    x = x + self.self_out(multi_head_attention(q, k, v, self_bias, self.heads))
    k, v = jnp.split(self.cross_kv(memory), 2, axis=-1)
    q = self.cross_q(self.cross_norm(x))
    x = x + self.cross_out(multi_head_attention(q, k, v, cross_bias, self.heads))
    return x + gated_gelu(self.wi, self.wo, self.mlp_norm(x))


class T5Decoder(nnx.Module):
  """Decoder input embeddings [B, Lt, D] + encoder output [B, Ls, D] -> hidden [B, Lt, D]."""

  def __init__(self, *, width: int, depth: int, heads: int, mlp: int, num_buckets: int = 32,
               max_distance: int = 128, rngs: nnx.Rngs):
    self.rel_bias = nnx.Embed(num_buckets, heads, rngs=rngs,
                              embedding_metadata=logical_axes("buckets", "head_count"))
    self.layers = nnx.List([T5DecoderLayer(width, heads, mlp, rngs=rngs) for _ in range(depth)])
    self.final_norm = RMSNorm(width)
    self.max_distance = max_distance

  def __call__(self, x: jax.Array, memory: jax.Array, memory_mask: jax.Array) -> jax.Array:
    length = x.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    self_bias = position_bias(self.rel_bias, length, length, bidirectional=False,
                              max_distance=self.max_distance)
    self_bias = self_bias + jnp.where(causal, 0.0, -1e9)[None, None]
    cross_bias = jnp.where(memory_mask[:, None, None, :], 0.0, -1e9)
    tokens = ("batch", "text_tokens", "act_embed")
    for layer in self.layers:
      x = constrain(layer(x, self_bias, memory, cross_bias), tokens)
    return self.final_norm(x)


class SpanCorruptionModel(nnx.Module):
  """Encoder-decoder for span-corruption pretraining: logits [B, Lt, vocab] of the targets.

  `vocab_size` here is the extended vocabulary (tokenizer pieces + sentinels).
  """

  def __init__(self, *, vocab_size: int, width: int, depth: int, heads: int, mlp: int,
               decoder_depth: int, tie_head: bool, rngs: nnx.Rngs):
    self.encoder = T5Encoder(vocab_size=vocab_size, width=width, depth=depth, heads=heads,
                             mlp=mlp, rngs=rngs)
    self.decoder = T5Decoder(width=width, depth=decoder_depth, heads=heads, mlp=mlp, rngs=rngs)
    self.tie_head, self.width = tie_head, width
    self.head = None if tie_head else _linear(width, vocab_size, ("embed", "vocab"), rngs)

  @classmethod
  def from_config(cls, config, *, vocab_size: int, rngs: nnx.Rngs) -> "SpanCorruptionModel":
    """From a full config: `config.text` shapes the encoder, `config.text_pretrain` the rest;
    `vocab_size` is the tokenizer's, the sentinels are added here."""
    t, p = config.text, config.text_pretrain
    return cls(vocab_size=vocab_size + p.num_sentinels, width=t.width, depth=t.depth,
               heads=t.heads, mlp=t.mlp, decoder_depth=p.decoder_depth, tie_head=p.tie_head,
               rngs=rngs)

  def __call__(self, ids: jax.Array, mask: jax.Array, decoder_ids: jax.Array) -> jax.Array:
    """ids, mask [B, Ls] (corrupted inputs); decoder_ids [B, Lt] (targets shifted right)."""
    memory = self.encoder(ids, mask)
    hidden = self.decoder(self.encoder.embed(decoder_ids), memory, mask)
    if self.tie_head:
      # T5 v1.0 rescales before a tied head, so logits start at the scale of an untied one.
      return self.encoder.embed.attend(hidden * self.width ** -0.5)
    return self.head(hidden)
