"""Fine-tuning: a training run that starts from a pretrained model (`init_from`).

`init_from` is a vdm model directory (`vdm train`'s export) or a downloaded Wan2.1 directory
(either layout, vdm.convert.wan). The run keeps that model's tokenizer and latent statistics; its
VAE and denoiser are built with this run's config and start from the pretrained weights
(`copy_params`): parameters the pretrained model lacks keep their fresh init (new control
inputs start at zero, LoRA's B at zero), so a run with LoRA (dit.lora_rank > 0) starts from
exactly the pretrained model. Options that do not change the weights may differ (dit.remat,
dit.scan_layers, dit.matmul_dtype, dit.temporal_window, the level and mask schemes of
`diffusion`); the fields that define the weights or how they are read (`MODEL_FIELDS`) must
equal the pretrained model's.
"""
from __future__ import annotations

from typing import NamedTuple

from flax import nnx

from vdm.dit.model import scan_params, unscan_params
from vdm.models import copy_params, load_model_dir
from vdm.text.tokenizer import Tokenizer

# The fields that define the pretrained weights and how they are read.
MODEL_FIELDS = {
    "text": ("width", "depth", "heads", "mlp", "position_bias", "vocab_rows"),
    "vae": ("base_channels", "channel_mult", "latent_channels", "temporal_downsample",
            "num_res_blocks", "norm", "layout"),
    "dit": ("width", "depth", "heads", "patch", "mlp_ratio", "attention", "qk_norm", "position",
            "temporal_patch", "mlp_width", "qk_norm_over", "cross_norm", "modulation",
            "time_freq_dim", "text_embed", "cross_mask"),
}


class Pretrained(NamedTuple):
  """The model at init_from, as loaded: its config, tokenizer, VAE, denoiser and latent
  statistics ({'mean', 'std'} [C])."""
  config: object
  tokenizer: Tokenizer
  vae: nnx.Module
  denoiser: nnx.Module
  latent_stats: dict


def _differences(config, pretrained) -> list[str]:
  out = []
  for section, names in MODEL_FIELDS.items():
    for name in names:
      ours, theirs = config[section][name], pretrained[section][name]
      if (tuple(ours) if isinstance(ours, (list, tuple)) else ours) != (
          tuple(theirs) if isinstance(theirs, (list, tuple)) else theirs):
        out.append(f"{section}.{name}: {theirs!r} there, {ours!r} here")
  return out


def load_pretrained(config) -> Pretrained:
  """The model at config.init_from (a vdm model directory or a Wan2.1 directory). Raises
  ValueError naming the model fields that differ from the pretrained model's."""
  from vdm.convert.wan import detect_layout, load_wan
  directory = config.init_from
  if detect_layout(directory) is not None:
    loaded = Pretrained(*load_wan(directory))
  else:
    loaded = Pretrained(*load_model_dir(directory))
  differ = _differences(config, loaded.config)
  if differ:
    raise ValueError(f"init_from {directory!r}: this config's model differs from the pretrained "
                     f"one in {differ}; set these fields to the pretrained model's")
  return loaded


def start_vae(vae: nnx.Module, pretrained: Pretrained) -> None:
  """Puts the pretrained VAE's weights into `vae` (built with this run's config), in place."""
  lacking = copy_params(pretrained.vae, vae)
  if lacking:
    raise ValueError(f"init_from={pretrained.config.name!r}: its VAE lacks {lacking[:8]} of "
                     "this config's VAE (vae.* must match the pretrained model's)")


def start_denoiser(config, denoiser: nnx.Module, pretrained: Pretrained) -> list[str]:
  """Puts the pretrained denoiser's weights into `denoiser` (built with `config`), in place:
  the DiT in the denoiser's dtype (float32: the weights that train), the text encoder as stored
  (a bf16 UMT5 stays bf16), scanned or unrolled layers converted to `config`'s layout. Returns
  the names of the parameters that keep their fresh init."""
  params = nnx.state(pretrained.denoiser, nnx.Param)
  if pretrained.config.dit.scan_layers != config.dit.scan_layers:
    convert = scan_params if config.dit.scan_layers else unscan_params
    params = convert(params, config.dit.depth)
  return copy_params(params, denoiser, as_stored=("text.",))
