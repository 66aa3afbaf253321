"""LoRA (Hu et al. 2021, "Low-Rank Adaptation of Large Language Models") on the DiT's blocks.

A target dense layer W [in, out] gains two small matrices A [in, r] and B [r, out] and computes

    y = x W + b + (alpha / r) x A B,

B starting at zero, so a model with LoRA added is the model it was added to. Fine-tuning then
trains A and B only (`is_lora` names them; vdm.train.run freezes everything else) and the
export folds them into the weights, W' = W + (alpha / r) A B (`merge_lora`): the exported model
is a plain DiT of the same config with `dit.lora_rank = 0`.

The layers are flax's own `nnx.LoRALinear` (A and B are `nnx.LoRAParam`s under `<layer>.lora.`),
with the alpha / r scale added; the base kernel and bias keep their names, so base weights load
into a model with LoRA unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.parallel.sharding import logical_axes

# The dense layers of a block LoRA can target: `layer` (in every module that has it) or
# `module.layer`. Attention modules are 'joint' (dit.attention='full') or 'spatial' and
# 'temporal' (factorized), and 'cross'; the MLP is 'mlp'.
LAYERS = ("q", "kv", "out", "fc1", "fc2")
MODULES = {"full": ("joint", "cross", "mlp"), "factorized": ("spatial", "temporal", "cross", "mlp")}


def allowed_targets(attention: str) -> tuple[str, ...]:
  """Every `dit.lora_targets` entry a DiT with this attention layout accepts."""
  mlp = ("fc1", "fc2")
  qualified = [f"{m}.{layer}" for m in MODULES[attention]
               for layer in (mlp if m == "mlp" else LAYERS[:3])]
  return LAYERS + tuple(qualified)


class LoRADense(nnx.LoRALinear):
  """nnx.LoRALinear whose low-rank branch is scaled by alpha / rank."""

  def __init__(self, *args, lora_scale: float, **kwargs):
    super().__init__(*args, **kwargs)
    self.lora_scale = float(lora_scale)

  def __call__(self, x: jax.Array, out_sharding=None) -> jax.Array:
    y = nnx.Linear.__call__(self, x, out_sharding=out_sharding)
    return y + self.lora_scale * self.lora(x).astype(y.dtype)


def _matches(module: str, layer: str, targets) -> bool:
  return layer in targets or f"{module}.{layer}" in targets


def add_lora(block: nnx.Module, *, rank: int, alpha: float, targets, rngs: nnx.Rngs) -> None:
  """Replaces each target dense layer of a DiT block (in place) by a `LoRADense` holding the
  same kernel and bias Variables. rank >= 1; targets: names from `allowed_targets`."""
  for module_name in ("joint", "spatial", "temporal", "cross", "mlp"):
    module = getattr(block, module_name, None)
    if module is None:
      continue
    for layer in LAYERS:
      linear = getattr(module, layer, None)
      if not isinstance(linear, nnx.Linear) or not _matches(module_name, layer, targets):
        continue
      in_axis, out_axis = linear.kernel.get_metadata().get("out_sharding") or (None, None)
      lora = LoRADense(linear.in_features, linear.out_features, lora_rank=rank,
                       lora_scale=alpha / rank, use_bias=linear.use_bias,
                       dot_general=linear.dot_general, rngs=rngs,
                       a_metadata=logical_axes(in_axis, None),
                       b_metadata=logical_axes(None, out_axis))
      lora.kernel, lora.bias = linear.kernel, linear.bias  # the base weights, not new ones
      setattr(module, layer, lora)


def is_lora(name: str) -> bool:
  """Whether a dotted parameter name is a LoRA matrix ('...q.lora.lora_a')."""
  return ".lora.lora_" in name


def merge_lora(params: dict, scale: float) -> dict:
  """Flat params {path tuple: array} of a model with LoRA -> those of the same model without
  it: each target's kernel W + scale A B, the A and B entries dropped. A and B may carry a
  leading [depth] axis (scanned layers)."""
  out = {path: value for path, value in params.items() if "lora" not in path}
  for path, a in params.items():
    if path[-2:] != ("lora", "lora_a"):
      continue
    b = params[path[:-1] + ("lora_b",)]
    kernel = path[:-2] + ("kernel",)
    delta = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(jnp.float32))
    out[kernel] = (out[kernel].astype(jnp.float32) + scale * delta).astype(out[kernel].dtype)
  return out
