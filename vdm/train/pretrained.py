"""Fine-tuning: a training run that starts from a pretrained model (`init_from`).

`init_from` is a vdm model directory or a downloaded Wan2.1 directory (either layout,
vdm.convert.wan). The run keeps that model's tokenizer, text encoder weights, VAE (not retrained:
the vae stage is skipped) and latent statistics, and its denoiser stage starts from the pretrained
denoiser, built with this run's config. So options that do not change the weights may differ
(dit.remat, dit.scan_layers, dit.matmul_dtype, dit.temporal_window, the level and mask schemes of
`diffusion`), and LoRA (dit.lora_rank > 0) adds its matrices at their init, B = 0, so the run
starts from exactly the pretrained model. Fields that define the weights or how they are read
(`MODEL_FIELDS`) must equal the pretrained model's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.convert.assemble import materialize
from vdm.dit.lora import is_lora
from vdm.dit.model import scan_params, unscan_params
from vdm.models import build_denoiser, load_model_dir
from vdm.pytree import leaf_names

# The fields that define the pretrained weights and how they are read.
MODEL_FIELDS = {
    "text": ("width", "depth", "heads", "mlp", "position_bias", "vocab_rows"),
    "vae": ("base_channels", "channel_mult", "latent_channels", "temporal_downsample",
            "num_res_blocks", "norm", "layout"),
    "dit": ("width", "depth", "heads", "patch", "mlp_ratio", "attention", "qk_norm", "position",
            "temporal_patch", "mlp_width", "qk_norm_over", "cross_norm", "modulation",
            "time_freq_dim", "text_embed", "cross_mask"),
}


def _differences(config, pretrained) -> list[str]:
  out = []
  for section, names in MODEL_FIELDS.items():
    for name in names:
      ours, theirs = config[section][name], pretrained[section][name]
      if (tuple(ours) if isinstance(ours, (list, tuple)) else ours) != (
          tuple(theirs) if isinstance(theirs, (list, tuple)) else theirs):
        out.append(f"{section}.{name}: {theirs!r} there, {ours!r} here")
  return out


def load_pretrained(config):
  """(tokenizer, vae, denoiser, latent_stats) of the model at config.init_from; the denoiser
  built with `config` (module docstring), its DiT in float32 (the weights that train), the rest
  as stored (a bf16 text encoder stays bf16). Raises ValueError naming the model fields that
  differ from the pretrained model's."""
  from vdm.convert.wan import detect_layout, load_wan
  directory = config.init_from
  if detect_layout(directory) is not None:
    pretrained, tokenizer, vae, denoiser, stats = load_wan(directory)
  else:
    pretrained, tokenizer, vae, denoiser, stats = load_model_dir(directory)
  differ = _differences(config, pretrained)
  if differ:
    raise ValueError(f"init_from {directory!r}: this config's model differs from the pretrained "
                     f"one in {differ}; set these fields to the pretrained model's")
  params = nnx.state(denoiser, nnx.Param)
  if pretrained.dit.scan_layers != config.dit.scan_layers:
    convert = scan_params if config.dit.scan_layers else unscan_params
    params = convert(params, config.dit.depth)
  return tokenizer, vae, with_weights(config, tokenizer.vocab_size, params), stats


def with_weights(config, vocab_size: int, params: nnx.State, seed: int = 0):
  """A Denoiser of `config` holding `params` (a denoiser's Params without LoRA); LoRA
  matrices, when config.dit.lora_rank > 0, at their init: A as flax draws it (He-uniform, from
  `seed`), B = 0."""
  abstract = nnx.eval_shape(lambda: build_denoiser(config, vocab_size, seed))
  given = dict(zip(leaf_names(params), jax.tree.leaves(params)))
  init = jax.random.key(seed)
  recipes = {}
  for i, (name, var) in enumerate(zip(leaf_names(nnx.state(abstract, nnx.Param)),
                                      jax.tree.leaves(nnx.state(abstract, nnx.Param)))):
    if is_lora(name):
      recipes[name] = (lambda v=var: jnp.zeros(v.shape, v.dtype)) if name.endswith(
          "lora_b") else (lambda k=jax.random.fold_in(init, i), v=var:
                          nnx.initializers.he_uniform()(k, v.shape, v.dtype))
    elif name in given:
      value = given[name]
      recipes[name] = (lambda v=value: v.astype(jnp.float32)) if name.startswith("dit.") else (
          lambda v=value: v)
  return materialize(abstract, recipes, where=f"init_from {config.init_from!r}")
