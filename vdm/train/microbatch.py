"""Gradient accumulation and mixed precision for the one training loop (vdm/train/loop.py).

  * `accumulated_value_and_grad`: the batch of one optimizer step is split into `accumulate`
    micro-batches run one after another by `jax.lax.scan`; loss, metrics and gradients are their
    means. Activation memory is that of one micro-batch, the update that of the whole batch.
  * `compute_copy`: the parameters a forward pass runs with, in the stage's `precision`. With
    bfloat16 the models compute in bf16 (they run in their parameters' dtype: the DiT casts its
    input latents to it, norms and softmax keep fp32 statistics, matmuls accumulate in fp32)
    while the optimizer updates fp32 master weights: the cast's gradient is the fp32 gradient.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_copy(params, precision: str):
  """Floating leaves of `params` cast to PRECISIONS[precision] (a no-op for float32)."""
  dtype = PRECISIONS[precision]
  return jax.tree.map(
      lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def split_microbatches(batch, accumulate: int, batch_size: int):
  """Every array of `batch` with `batch_size` leading rows -> [accumulate, batch_size /
  accumulate, ...]; micro-batch i holds rows i, i + accumulate, i + 2 accumulate, ..., so a batch
  split over data-parallel devices in contiguous blocks gives every device rows of every
  micro-batch. Other leaves (scalars) are repeated for each micro-batch."""
  def one(x):
    if x.ndim and x.shape[0] == batch_size:
      return jnp.swapaxes(x.reshape((batch_size // accumulate, accumulate) + x.shape[1:]), 0, 1)
    return jnp.broadcast_to(x, (accumulate,) + x.shape)
  return jax.tree.map(one, batch)


def accumulated_value_and_grad(loss_of: Callable, params, batch, rng, *, accumulate: int,
                               batch_size: int):
  """((loss, metrics), grads) of `loss_of(params, batch, rng) -> (loss, metrics)`, averaged
  over `accumulate` micro-batches of `batch` (micro-batch i draws its randomness from
  fold_in(rng, i)); accumulate = 1 is one plain value_and_grad on the whole batch."""
  grad_fn = jax.value_and_grad(loss_of, has_aux=True)
  if accumulate == 1:
    return grad_fn(params, batch, rng)
  micro = split_microbatches(batch, accumulate, batch_size)

  def step(total, xs):
    i, one_batch = xs
    out = grad_fn(params, one_batch, jax.random.fold_in(rng, i))
    return jax.tree.map(jnp.add, total, out), None

  first = jax.tree.map(lambda x: x[0], micro)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       jax.eval_shape(grad_fn, params, first, rng))
  total, _ = jax.lax.scan(step, zeros, (jnp.arange(accumulate), micro))
  return jax.tree.map(lambda x: x / accumulate, total)
