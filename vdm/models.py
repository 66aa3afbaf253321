"""Builds the models from a config, and saves/loads an exported model directory.

A model directory (what `vdm sample --checkpoint` and `vdm.Pipeline.load` read) holds:
  config.json       the full config the model was trained with
  tokenizer.model   the sentencepiece model
  latent_stats.json per-channel mean/std of the VAE latents (the denoiser sees normalised latents;
                    with audio also 'audio_mean'/'audio_std' of the audio VAE's)
  vae/, denoiser/   orbax checkpoints of the (EMA) parameters
  audio_vae/        the audio VAE's, when config.audio.enabled (a joint audio-video model)
Loading builds abstract models with `nnx.eval_shape` and restores into them: nothing is executed
from the directory and nothing is unpickled.
"""
from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from vdm.audio.vae import AudioVAE
from vdm.config import ConfigError, upgrade, validate
from vdm.config.t2v import audio_latents_per_frame
from vdm.control.features import dit_inputs
from vdm.dit.audio import audio_block_params
from vdm.dit.model import DiT
from vdm.pytree import leaf_names
from vdm.text.encoder import T5Encoder
from vdm.text.tokenizer import Tokenizer
from vdm.vae.model import CausalVAE

MODEL_FILES = ("config.json", "tokenizer.model", "latent_stats.json", "vae", "denoiser")


class Denoiser(nnx.Module):
  """Text encoder + DiT: velocity v(z_t [B,T,h,w,C], levels [B,T], ids [B,L], mask [B,L]); with
  audio (config.audio.enabled) also the audio stream: pass audio [B,Ta,Ca] and audio_levels
  [B,Ta] to get (velocity, audio velocity)."""

  def __init__(self, config: ml_collections.ConfigDict, *, vocab_size: int, rngs: nnx.Rngs):
    self.text = T5Encoder.from_config(config.text, vocab_size=vocab_size, rngs=rngs)
    with_audio = config.audio.enabled
    self.dit = DiT.from_config(
        config.dit, latent_channels=config.vae.latent_channels, text_width=config.text.width,
        rngs=rngs, audio=config.audio if with_audio else None,
        audio_per_frame=audio_latents_per_frame(config) if with_audio else 0,
        video_temporal_downsample=config.vae.temporal_downsample, **dit_inputs(config))

  def __call__(self, z, levels, ids, mask, temporal_mask=None, frame_offset=0, control=None,
               audio=None, audio_levels=None, **conditions):
    """control: a `vdm.dit.model.Control` for a model with control inputs (None: not given);
    audio [B, Ta, Ca] and audio_levels [B, Ta]: the audio stream of a joint model; conditions:
    the DiT's scalar inputs (guidance, step) of a distilled student."""
    return self.dit(z, levels, self.text(ids, mask), mask, temporal_mask, frame_offset,
                    control, audio=audio, audio_levels=audio_levels, **conditions)


def count_params(module: nnx.Module) -> int:
  """Number of parameters of a module (concrete or from nnx.eval_shape)."""
  return sum(int(math.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def denoiser_param_count(config, vocab_size: int) -> int:
  """Parameters of `Denoiser(config)` in closed form (T5 encoder + DiT), for sizing a config.

  dense(i, o) has i*o + o parameters (T5's linears have no bias); norms: T5's RMSNorm has a scale,
  the DiT's LayerNorms have none (adaLN supplies scale and shift).
  """
  t, d = config.text, config.dit
  dense = lambda i, o: i * o + o  # noqa: E731
  biases = t.depth if t.position_bias == "per_layer" else 1  # relative-position tables
  text_params = ((t.vocab_rows or vocab_size) * t.width + 32 * t.heads * biases
                 + t.width  # the final norm
                 + t.depth * (2 * t.width + 4 * t.width**2 + 3 * t.width * t.mlp))
  w, c, p = d.width, config.vae.latent_channels, d.patch
  patch_dim = d.temporal_patch * p * p * c  # latent values per token
  hidden = d.mlp_width or int(w * d.mlp_ratio)
  attention = dense(w, w) + dense(w, 2 * w) + dense(w, w)
  if d.qk_norm:  # a learned RMSNorm scale on q and on k, per head dimension or over the width
    attention += 2 * (w if d.qk_norm_over == "width" else w // d.heads)
  # factorized: spatial + temporal + cross attention, 9 modulations; full: 3D + cross, 6.
  attentions = 3 if d.attention == "factorized" else 2
  mods = 3 * attentions * w
  table = d.modulation == "table"  # a [mods] table per block, one shared projection
  block = (attentions * attention + dense(w, hidden) + dense(hidden, w)
           + (mods if table else dense(w, mods)) + (2 * w if d.cross_norm else 0))
  if d.lora_rank:  # A [in, r] and B [r, out] per target layer (vdm.dit.lora)
    from vdm.dit.lora import MODULES
    shapes = dict(q=(w, w), kv=(w, 2 * w), out=(w, w), fc1=(w, hidden), fc2=(hidden, w))
    block += sum(d.lora_rank * (i + o) for m in MODULES[d.attention]
                 for layer, (i, o) in shapes.items()
                 if (m == "mlp") == layer.startswith("fc")
                 and (layer in d.lora_targets or f"{m}.{layer}" in d.lora_targets))
  freq = d.time_freq_dim or w
  time = dense(freq, w) + dense(w, w) + (dense(w, mods) if table else 0)
  text_embed = (dense(t.width, w) + dense(w, w))  # text_proj + pooled_text, or the text MLP
  head = (2 * w if table else dense(w, 2 * w)) + dense(w, patch_dim)
  scalar_inputs = int(d.guidance_input) + int(d.step_input)  # two dense(w, w) each
  dit = (dense(patch_dim, w) + time + text_embed + d.depth * block + head
         + scalar_inputs * 2 * dense(w, w))
  control = dit_inputs(config)  # a linear map of the token features, an MLP of the frame's
  if control["control_token_features"]:
    dit += dense(control["control_token_features"], w)
  if control["control_frame_features"]:
    dit += dense(control["control_frame_features"], w) + dense(w, w)
  if control["control_camera_token_features"]:
    dit += dense(control["control_camera_token_features"], w)
  if config.audio.enabled:  # vdm.dit.audio: embedding, modality vector, blocks, output
    a = config.audio
    dit += (dense(a.latent_channels, w) + w + dense(w, 2 * w) + dense(w, a.latent_channels)
            + d.depth * audio_block_params(w, d.mlp_ratio, d.heads,
                                           video_attention=a.video_attention,
                                           qk_norm=d.qk_norm))
  return text_params + dit


def build_vae(config, seed: int = 0) -> CausalVAE:
  return CausalVAE.from_config(config.vae, rngs=nnx.Rngs(seed))


def build_audio_vae(config, seed: int = 0) -> AudioVAE:
  return AudioVAE.from_config(config.audio, rngs=nnx.Rngs(seed))


def build_denoiser(config, vocab_size: int, seed: int = 0) -> Denoiser:
  return Denoiser(config, vocab_size=vocab_size, rngs=nnx.Rngs(seed))


def without_lora(config, denoiser: Denoiser, vocab_size: int):
  """(config, denoiser) with LoRA folded into the weights, W + (alpha / r) A B
  (`vdm.dit.lora.merge_lora`): a copy of the config with dit.lora_rank = 0 and a plain Denoiser
  of it. Returned as given when the config has no LoRA."""
  if not config.dit.lora_rank:
    return config, denoiser
  from vdm.convert.assemble import materialize
  from vdm.dit.lora import merge_lora
  plain = config.copy_and_resolve_references()
  plain.dit.lora_rank = 0
  flat = {path: var.get_value()
          for path, var in nnx.to_flat_state(nnx.state(denoiser, nnx.Param))}
  merged = merge_lora(flat, config.dit.lora_alpha / config.dit.lora_rank)
  abstract = nnx.eval_shape(lambda: build_denoiser(plain, vocab_size))
  return plain, materialize(abstract, {".".join(map(str, path)): (lambda v=value: v)
                                       for path, value in merged.items()})


def save_params(model: nnx.Module, path: str) -> None:
  """Writes the module's Params as an orbax checkpoint at `path` (must not exist)."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), nnx.state(model, nnx.Param))


def _shapes(tree) -> dict[str, tuple]:
  """'a.b.kernel' -> shape of every array leaf."""
  return dict(zip(leaf_names(tree), (tuple(x.shape) for x in jax.tree.leaves(tree))))


def load_params(model: nnx.Module, path: str) -> nnx.Module:
  """Restores Params saved by `save_params` into `model` (concrete or from nnx.eval_shape).

  Raises ValueError listing the parameters whose shapes (or presence) differ when the checkpoint
  was saved from a model built with another config.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
  with ocp.StandardCheckpointer() as checkpointer:
    saved = _shapes(_read_checkpoint(path, lambda: checkpointer.metadata(
        os.path.abspath(path)).item_metadata))
    wanted = _shapes(abstract)
    if saved != wanted:
      differ = sorted(set(saved) ^ set(wanted)) + sorted(
          k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
      detail = [f"{k}: checkpoint {saved.get(k, 'absent')} vs config {wanted.get(k, 'absent')}"
                for k in differ[:8]]
      raise ValueError(f"{path}: the checkpoint does not fit the model its config.json builds; "
                       f"{len(differ)} parameters differ: {detail} (was config.json edited, or "
                       "the weights copied from another run?)")
    restored = _read_checkpoint(path, lambda: checkpointer.restore(os.path.abspath(path),
                                                                   abstract))
  return nnx.merge(graphdef, restored, rest)


def copy_params(source, target: nnx.Module, *, as_stored: tuple[str, ...] = ()) -> list[str]:
  """Copies every parameter of `source` (a module, or its Params as an nnx.State) into the
  same-named parameter of `target`, in place (fine-tuning a trained model whose config adds
  inputs), in the target's dtype except the names starting with a prefix in `as_stored` (kept
  as stored, e.g. a frozen bf16 text encoder). Raises ValueError naming the parameters of
  source that target lacks or holds in another shape; returns the names of the parameters of
  target that source lacks (they keep their initial values, e.g. LoRA matrices)."""
  state = source if isinstance(source, nnx.State) else nnx.state(source, nnx.Param)
  src = {".".join(map(str, k)): v for k, v in nnx.to_flat_state(state)}
  flat = list(nnx.to_flat_state(nnx.state(target, nnx.Param)))
  dst = {".".join(map(str, k)): v for k, v in flat}
  shape = lambda k, d: tuple(d[k].get_value().shape) if k in d else "absent"  # noqa: E731
  differ = [f"{k}: {shape(k, src)} vs {shape(k, dst)}" for k in src
            if shape(k, src) != shape(k, dst)]
  if differ:
    raise ValueError(f"{len(differ)} parameters do not fit the model being trained "
                     f"(source vs target): {differ[:8]}")

  def value(name, var):
    if name not in src:
      return var
    given = src[name]
    if name.startswith(tuple(as_stored)) or given.get_value().dtype == var.get_value().dtype:
      return given
    return var.replace(given.get_value().astype(var.get_value().dtype))

  merged = [(k, value(".".join(map(str, k)), v)) for k, v in flat]
  nnx.update(target, nnx.from_flat_state(merged))
  return sorted(set(dst) - set(src))


def _read_checkpoint(path: str, read):
  """read() of an orbax checkpoint; a damaged one (orbax and TensorStore report truncated or
  missing files as KeyError, ValueError or a bare Exception) becomes a ValueError naming it."""
  try:
    return read()
  except Exception as e:  # noqa: BLE001 - see the docstring; the cause stays chained
    first = (str(e).strip().splitlines() or [""])[0][:160]
    raise ValueError(f"{path}: the checkpoint cannot be read ({type(e).__name__}: {first}); "
                     "it is damaged or incomplete") from e


def write_latent_stats(path: str, latent_stats: dict) -> None:
  """Per-channel latent statistics ({'mean': [C], 'std': [C]}) as JSON."""
  with open(path, "w") as f:
    json.dump({k: np.asarray(v).tolist() for k, v in latent_stats.items()}, f)


def read_latent_stats(path: str) -> dict:
  with open(path) as f:
    return {k: jnp.asarray(v, jnp.float32) for k, v in json.load(f).items()}


def save_model_dir(directory: str, *, config, tokenizer: Tokenizer, vae: CausalVAE,
                   denoiser: Denoiser, latent_stats: dict, audio_vae: AudioVAE | None = None
                   ) -> None:
  """Writes a model directory (see the module docstring); audio_vae for a joint model. The
  models may be sharded over a mesh of several processes: every process calls this; process 0
  writes the single files and orbax writes the parameters from all of them."""
  if bool(config.audio.enabled) != (audio_vae is not None):
    raise ValueError("save_model_dir: an audio VAE is saved exactly when config.audio.enabled")
  os.makedirs(directory, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(directory, "config.json"), "w") as f:
      f.write(config.to_json(indent=2))
    tokenizer.save(os.path.join(directory, "tokenizer.model"))
    write_latent_stats(os.path.join(directory, "latent_stats.json"), latent_stats)
  save_params(vae, os.path.join(directory, "vae"))
  save_params(denoiser, os.path.join(directory, "denoiser"))
  if audio_vae is not None:
    save_params(audio_vae, os.path.join(directory, "audio_vae"))


def load_vae(directory: str, config) -> CausalVAE:
  """The VAE of a model directory (`vae.init_from`), built from `config`'s vae fields: its
  weights must fit them (`load_params` names the parameters that do not)."""
  if not os.path.isdir(os.path.join(directory, "vae")):
    raise FileNotFoundError(f"vae.init_from={directory!r}: no vae/ folder there (a model "
                            "directory written by `vdm train`, e.g. checkpoints/spine)")
  return load_params(nnx.eval_shape(lambda: build_vae(config)), os.path.join(directory, "vae"))


def check_model_dir(directory: str) -> None:
  """Raises FileNotFoundError naming what is missing from a model directory."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"--checkpoint {directory!r}: no such directory")
  missing = [name for name in MODEL_FILES if not os.path.exists(os.path.join(directory, name))]
  if missing:
    raise FileNotFoundError(
        f"--checkpoint {directory!r} is not a vdm model directory: missing {missing} "
        f"(expected {list(MODEL_FILES)}, as written by `vdm train`)")


def load_model_dir(directory: str, *, scan_layers: bool | None = None):
  """Returns (config, tokenizer, vae, denoiser, latent_stats) from a model directory.

  scan_layers: None keeps the DiT layout the model was trained with; True / False loads its
  weights into the other layout (`dit.scan_layers`: one scanned block of stacked weights, or
  unrolled blocks) through the exact converters of vdm.dit.model, and the returned config says so.
  E.g. a model trained unrolled on CPU samples at depth with a compile time flat in depth.
  """
  check_model_dir(directory)
  where = f"--checkpoint {directory!r}"
  try:
    with open(os.path.join(directory, "config.json")) as f:
      stored = json.load(f)
    lacking = [k for k in ("data", "text", "vae", "dit") if k not in stored]
    config = upgrade(ml_collections.ConfigDict(stored)) if not lacking else None
  except (ValueError, TypeError, AttributeError) as e:  # not JSON, or JSON that is no mapping
    raise ValueError(f"{where}: config.json is not a readable config ({e})") from None
  if lacking:  # upgrade would fill them with defaults: a different model than the weights'
    raise ValueError(f"{where}: config.json lacks the sections {lacking}")
  try:
    validate(config)
  except ConfigError as e:
    raise ConfigError(f"{where}: its config.json is not a valid model config: {e}") from None
  try:
    tokenizer = Tokenizer.load(os.path.join(directory, "tokenizer.model"))
  except (RuntimeError, OSError) as e:  # sentencepiece's report of an unreadable model
    raise ValueError(f"{where}: tokenizer.model is not a sentencepiece model "
                     f"({str(e).strip()[:120]})") from None
  vae = load_params(nnx.eval_shape(lambda: build_vae(config)), os.path.join(directory, "vae"))
  denoiser = load_params(nnx.eval_shape(lambda: build_denoiser(config, tokenizer.vocab_size)),
                         os.path.join(directory, "denoiser"))
  if scan_layers is not None and bool(scan_layers) != config.dit.scan_layers:
    denoiser = _convert_layout(denoiser, config, tokenizer.vocab_size, bool(scan_layers))
  try:
    latent_stats = read_latent_stats(os.path.join(directory, "latent_stats.json"))
    if not {"mean", "std"} <= set(latent_stats):
      raise ValueError(f"keys {sorted(latent_stats)}")
  except (ValueError, AttributeError) as e:
    raise ValueError(f"{where}: latent_stats.json is not {{'mean': [C], 'std': [C]}} "
                     f"({e})") from None
  return config, tokenizer, vae, denoiser, latent_stats


def load_audio_vae(directory: str, config) -> AudioVAE | None:
  """The audio VAE of a joint model directory (config.audio.enabled), else None; raises
  FileNotFoundError naming audio_vae/ when a joint model's directory lacks it."""
  if not config.audio.enabled:
    return None
  path = os.path.join(directory, "audio_vae")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"--checkpoint {directory!r}: its config has audio.enabled=True but "
                            "the directory has no audio_vae/ (as written by `vdm train`)")
  return load_params(nnx.eval_shape(lambda: build_audio_vae(config)), path)


def _convert_layout(denoiser: Denoiser, config, vocab_size: int, scan_layers: bool) -> Denoiser:
  """The denoiser's weights in a model built with dit.scan_layers = `scan_layers` (config is
  updated in place to match)."""
  from vdm.dit.model import scan_params, unscan_params
  convert = scan_params if scan_layers else unscan_params
  params = convert(nnx.state(denoiser, nnx.Param), config.dit.depth)
  with config.unlocked():
    config.dit.scan_layers = scan_layers
  graphdef, _, rest = nnx.split(nnx.eval_shape(lambda: build_denoiser(config, vocab_size)),
                                nnx.Param, ...)
  return nnx.merge(graphdef, params, rest)
