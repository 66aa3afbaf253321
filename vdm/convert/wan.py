"""Wan2.1 checkpoints (both public layouts) -> vdm's DiT, VAE and UMT5 text encoder.

Layouts (`detect_layout`):
  'diffusers'  a pipeline directory: model_index.json, transformer/, vae/, text_encoder/ (each a
               config.json and safetensors, sharded with an index), tokenizer/spiece.model;
  'original'   the Wan release: config.json, diffusion_pytorch_model*.safetensors,
               Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/spiece.model.
The .pth files are read by `vdm.convert.readers.read_pth` (an allow-list unpickler: tensors only).
Original names are renamed to diffusers' (`dit_name`, `vae_name`, `umt5_name`); one set of
recipes (array functions of the tensors they read: numpy on tensors read from a file, so
loading compiles nothing; jax.numpy on traced ones, so `jax.eval_shape` checks a full-size
model's conversion without reading or allocating anything) builds each vdm parameter from
diffusers-named tensors:
  - the patch embedding's Conv3d [D, C, pt, p, p] -> a dense over patchified tokens;
  - Wan's RoPE rotates interleaved pairs (2i, 2i + 1); vdm's rotates (i, i + Dh/2). Permuting
    each head's query and key rows [0, 2, 4, .., 1, 3, 5, ..] (and the q/k RMSNorm scales, whose
    norm over the width does not see the order) makes the two the same function;
  - Wan's time sinusoid is [cos, sin], vdm's [sin, cos]: the first time layer's input rows swap;
  - UMT5 attends without 1/sqrt(d): the query rows are scaled by sqrt(d) for vdm's scaled
    attention (exact in bf16: d = 64);
  - k and v (and the T5 q, k, v, and the gated GELU's two input maps) are concatenated into
    vdm's fused matrices.
"""
from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vdm.convert.layout import ORIGINAL_VAE, detect_layout
from vdm.convert.readers import Weights, open_weights, safetensors_files

LAYOUTS = ("diffusers", "original")

# Wan2.1's VAE latent statistics (diffusers' AutoencoderKLWan defaults; the original code's).
LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
               2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]

# Files of the original release.
ORIGINAL_T5 = "models_t5_umt5-xxl-enc-bf16.pth"
ORIGINAL_TOKENIZER = os.path.join("google", "umt5-xxl", "spiece.model")


# ----------------------------------------------------------------------------- layouts

def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def dit_dims(directory: str, layout: str) -> dict:
  """The DiT's shape from its config.json, in the diffusers config's names."""
  if layout == "diffusers":
    c = _read_json(os.path.join(directory, "transformer", "config.json"))
    return dict(heads=c["num_attention_heads"], head_dim=c["attention_head_dim"],
                in_channels=c["in_channels"], text_dim=c["text_dim"], freq_dim=c["freq_dim"],
                ffn_dim=c["ffn_dim"], layers=c["num_layers"], patch=list(c["patch_size"]))
  c = _read_json(os.path.join(directory, "config.json"))
  return dict(heads=c["num_heads"], head_dim=c["dim"] // c["num_heads"], in_channels=c["in_dim"],
              text_dim=c.get("text_dim", 4096), freq_dim=c["freq_dim"], ffn_dim=c["ffn_dim"],
              layers=c["num_layers"], patch=list(c.get("patch_size", (1, 2, 2))))


# ----------------------------------------------------------------------------- names

# Wrappers' names in the keys of a state dict saved from a wrapped model (torch FSDP, activation
# checkpointing, torch.compile): Self-Forcing's EMA weights carry them, and its trainers drop
# exactly these when they name parameters.
WRAPPER_NAMES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def dit_name(name: str) -> str:
  """A Wan release DiT key -> diffusers' (the rename diffusers' converter applies), with a
  Self-Forcing / CausVid generator's prefix ('model.': their wrapper holds the Wan model as
  `.model`) and wrappers' names (`WRAPPER_NAMES`) dropped."""
  for wrapper in WRAPPER_NAMES:
    name = name.replace(wrapper, "")
  for prefix in ("model.diffusion_model.", "model."):
    if name.startswith(prefix):
      name = name[len(prefix):]
  if name == "head.modulation":
    return "scale_shift_table"
  for old, new in (("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
                   ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
                   ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
                   ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
                   ("time_projection.1", "condition_embedder.time_proj"),
                   ("self_attn.", "attn1."), ("cross_attn.", "attn2."), (".o.", ".to_out.0."),
                   (".q.", ".to_q."), (".k.", ".to_k."), (".v.", ".to_v."),
                   ("ffn.0.", "ffn.net.0.proj."), ("ffn.2.", "ffn.net.2."),
                   ("head.head", "proj_out"), ("modulation", "scale_shift_table"),
                   (".norm3.", ".norm2.")):  # Wan's cross-attention norm3 is diffusers' norm2
    name = name.replace(old, new)
  return name


def vae_name(name: str, num_res_blocks: int = 2) -> str:
  """A Wan2.1_VAE.pth key -> diffusers' AutoencoderKLWan key."""
  res = {"residual.0.gamma": "norm1.gamma", "residual.2": "conv1", "residual.3.gamma":
         "norm2.gamma", "residual.6": "conv2", "shortcut": "conv_shortcut"}

  def resnet(rest: str) -> str:
    for old, new in res.items():
      if rest.startswith(old):
        return new + rest[len(old):]
    raise KeyError(name)

  parts = name.split(".")
  if parts[0] in ("conv1", "conv2"):
    return ".".join(["quant_conv" if parts[0] == "conv1" else "post_quant_conv"] + parts[1:])
  side, what, rest = parts[0], parts[1], ".".join(parts[2:])
  if what == "conv1":
    return f"{side}.conv_in.{rest}"
  if what == "head":
    return f"{side}.{'norm_out' if parts[2] == '0' else 'conv_out'}.{'.'.join(parts[3:])}"
  if what == "middle":
    i, rest = int(parts[2]), ".".join(parts[3:])
    if i == 1:
      return f"{side}.mid_block.attentions.0.{rest}"
    return f"{side}.mid_block.resnets.{i // 2}.{resnet(rest)}"
  if what == "downsamples":
    i, rest = parts[2], ".".join(parts[3:])
    if rest.startswith(("resample", "time_conv")):
      return f"encoder.down_blocks.{i}.{rest}"
    return f"encoder.down_blocks.{i}.{resnet(rest)}"
  if what == "upsamples":
    i, rest = int(parts[2]), ".".join(parts[3:])
    per = num_res_blocks + 2  # resnets + the upsampler of each level
    block, j = divmod(i, per)
    if j == num_res_blocks + 1:
      return f"decoder.up_blocks.{block}.upsamplers.0.{rest}"
    return f"decoder.up_blocks.{block}.resnets.{j}.{resnet(rest)}"
  raise KeyError(name)


def umt5_name(name: str) -> str:
  """A models_t5_umt5-xxl-enc-bf16.pth key -> transformers' UMT5EncoderModel key."""
  if name == "token_embedding.weight":
    return "shared.weight"
  if name == "norm.weight":
    return "encoder.final_layer_norm.weight"
  _, i, *rest = name.split(".")
  rest = ".".join(rest)
  table = {"pos_embedding.embedding.weight": "0.SelfAttention.relative_attention_bias.weight",
           "norm1.weight": "0.layer_norm.weight", "norm2.weight": "1.layer_norm.weight",
           "attn.q.weight": "0.SelfAttention.q.weight", "attn.k.weight": "0.SelfAttention.k.weight",
           "attn.v.weight": "0.SelfAttention.v.weight", "attn.o.weight": "0.SelfAttention.o.weight",
           "ffn.gate.0.weight": "1.DenseReluDense.wi_0.weight",
           "ffn.fc1.weight": "1.DenseReluDense.wi_1.weight",
           "ffn.fc2.weight": "1.DenseReluDense.wo.weight"}
  return f"encoder.block.{i}.layer.{table[rest]}"


class Renamed:
  """A Weights view under other names: new name -> the source's tensor."""

  def __init__(self, weights: Weights, rename):
    self.weights = weights
    self.names = {}
    for n in weights:
      self.names[rename(n)] = n

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.names:
      raise KeyError(f"{name} is not in {self.weights.paths}")
    return self.weights[self.names[name]]

  __call__ = __getitem__

  def shape(self, name: str) -> tuple:
    return self.weights.shape(self.names[name])

  def __contains__(self, name: str) -> bool:
    return name in self.names

  def __iter__(self):
    return iter(self.names)


def open_generator(path: str, key: str = "generator"):
  """The DiT tensors of a Self-Forcing or CausVid checkpoint under diffusers' names.

  Those are training checkpoints (torch.save of {'generator', 'critic'[, 'generator_ema']}, read
  by the same allow-list reader as Wan's .pth files): `key` picks the state dict, whose keys are
  'model.' + Wan's own names (the generator wraps a Wan model as `.model`)."""
  return Renamed(open_weights([path], key=key), dit_name)


def open_component(directory: str, layout: str, component: str):
  """The tensors of 'transformer', 'vae' or 'text_encoder' under diffusers / transformers names."""
  if layout == "diffusers":
    stem = "model" if component == "text_encoder" else "diffusion_pytorch_model"
    weights = open_weights(safetensors_files(os.path.join(directory, component), stem))
    return Renamed(weights, lambda n: n)
  if component == "transformer":
    return Renamed(open_weights(safetensors_files(directory)), dit_name)
  if component == "vae":
    return Renamed(open_weights([os.path.join(directory, ORIGINAL_VAE)]), vae_name)
  return Renamed(open_weights([os.path.join(directory, ORIGINAL_T5)]), umt5_name)


# ----------------------------------------------------------------------------- recipes

def _xp(*arrays):
  """numpy for tensors read from a file (a load compiles no XLA program per shape), jax.numpy
  for traced ones (`jax.eval_shape` of a full-size conversion)."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _t(a):
  return a.T


def rope_permutation(width: int, head_dim: int) -> np.ndarray:
  """Output-row order that turns Wan's interleaved RoPE pairs into vdm's rotate-half pairs."""
  within = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])
  return (np.arange(width // head_dim)[:, None] * head_dim + within[None, :]).reshape(-1)


def _dense(recipes, prefix, get, name, *, cols=None, rows=None):
  """kernel [in, out] = weight.T (columns in `cols` order, rows in `rows` order) and bias."""
  def kernel():
    k = _t(get(f"{name}.weight"))
    k = k if cols is None else k[:, cols]
    return k if rows is None else k[rows]
  recipes[f"{prefix}.kernel"] = kernel
  recipes[f"{prefix}.bias"] = (lambda: get(f"{name}.bias")) if cols is None else (
      lambda: get(f"{name}.bias")[cols])


def _mlp(recipes, prefix, get, first, second, rows=None):
  _dense(recipes, f"{prefix}.fc1", get, first, rows=rows)
  _dense(recipes, f"{prefix}.fc2", get, second)


def dit_recipes(get, *, depth: int, width: int, head_dim: int, prefix: str = "") -> dict:
  """vdm DiT parameter name (under `prefix`) -> recipe, from diffusers-named tensors `get`."""
  r: dict = {}
  p = prefix
  perm = rope_permutation(width, head_dim)

  def patch_kernel():
    w = get("patch_embedding.weight")  # [D, C, pt, ph, pw]
    return w.transpose(2, 3, 4, 1, 0).reshape(-1, w.shape[0])
  r[f"{p}embed.kernel"] = patch_kernel
  r[f"{p}embed.bias"] = lambda: get("patch_embedding.bias")

  def time_rows():  # [cos, sin] -> [sin, cos]
    freq = get("condition_embedder.time_embedder.linear_1.weight").shape[1]
    return np.roll(np.arange(freq), freq // 2)
  ce = "condition_embedder"
  r[f"{p}time_mlp.fc1.kernel"] = lambda: _t(get(f"{ce}.time_embedder.linear_1.weight"))[
      time_rows()]
  r[f"{p}time_mlp.fc1.bias"] = lambda: get(f"{ce}.time_embedder.linear_1.bias")
  _dense(r, f"{p}time_mlp.fc2", get, f"{ce}.time_embedder.linear_2")
  _dense(r, f"{p}time_projection", get, f"{ce}.time_proj")
  _mlp(r, f"{p}text_mlp", get, f"{ce}.text_embedder.linear_1", f"{ce}.text_embedder.linear_2")
  for i in range(depth):
    b, s = f"{p}blocks.{i}", f"blocks.{i}"
    for mine, theirs, rope in (("joint", "attn1", True), ("cross", "attn2", False)):
      order = perm if rope else None
      _dense(r, f"{b}.{mine}.q", get, f"{s}.{theirs}.to_q", cols=order)
      _dense(r, f"{b}.{mine}.out", get, f"{s}.{theirs}.to_out.0")

      def kv_kernel(s=s, theirs=theirs, order=order):
        k = _t(get(f"{s}.{theirs}.to_k.weight"))
        v = _t(get(f"{s}.{theirs}.to_v.weight"))
        return _xp(k, v).concatenate([k if order is None else k[:, order], v], axis=1)

      def kv_bias(s=s, theirs=theirs, order=order):
        k, v = get(f"{s}.{theirs}.to_k.bias"), get(f"{s}.{theirs}.to_v.bias")
        return _xp(k, v).concatenate([k if order is None else k[order], v])
      r[f"{b}.{mine}.kv.kernel"], r[f"{b}.{mine}.kv.bias"] = kv_kernel, kv_bias
      for qk in ("q", "k"):
        r[f"{b}.{mine}.{qk}_norm.scale"] = (
            lambda s=s, theirs=theirs, qk=qk, order=order:
            get(f"{s}.{theirs}.norm_{qk}.weight")[
                slice(None) if order is None else order])
    r[f"{b}.cross_norm.scale"] = lambda s=s: get(f"{s}.norm2.weight")
    r[f"{b}.cross_norm.bias"] = lambda s=s: get(f"{s}.norm2.bias")
    _mlp(r, f"{b}.mlp", get, f"{s}.ffn.net.0.proj", f"{s}.ffn.net.2")
    r[f"{b}.modulation"] = lambda s=s: get(f"{s}.scale_shift_table")[0]
  r[f"{p}final_modulation"] = lambda: get("scale_shift_table")[0]
  _dense(r, f"{p}final", get, "proj_out")
  return r


def umt5_recipes(get, *, depth: int, head_dim: int, prefix: str = "") -> dict:
  """vdm T5Encoder (position_bias='per_layer') parameter name -> recipe, from transformers'
  UMT5EncoderModel names. The queries are scaled by sqrt(head_dim): UMT5 attends unscaled."""
  r: dict = {f"{prefix}embed.embedding": lambda: get("shared.weight"),
             f"{prefix}final_norm.scale": lambda: get("encoder.final_layer_norm.weight")}
  scale = math.sqrt(head_dim)
  for i in range(depth):
    layer, s = f"{prefix}layers.{i}", f"encoder.block.{i}.layer"
    attn = lambda n, s=s: _t(get(f"{s}.0.SelfAttention.{n}.weight"))  # noqa: E731
    mlp = lambda n, s=s: _t(get(f"{s}.1.DenseReluDense.{n}.weight"))  # noqa: E731

    def qkv(attn=attn):
      q = attn("q")
      q = (q.astype(np.float32) * scale).astype(q.dtype)
      k, v = attn("k"), attn("v")
      return _xp(q, k, v).concatenate([q, k, v], axis=1)
    r[f"{layer}.qkv.kernel"] = qkv
    r[f"{layer}.out.kernel"] = lambda attn=attn: attn("o")
    r[f"{layer}.wi.kernel"] = lambda mlp=mlp: _xp(mlp("wi_0")).concatenate(
        [mlp("wi_0"), mlp("wi_1")], axis=1)
    r[f"{layer}.wo.kernel"] = lambda mlp=mlp: mlp("wo")
    r[f"{layer}.attn_norm.scale"] = lambda s=s: get(f"{s}.0.layer_norm.weight")
    r[f"{layer}.mlp_norm.scale"] = lambda s=s: get(f"{s}.1.layer_norm.weight")
    r[f"{layer}.rel_bias.embedding"] = lambda s=s: get(
        f"{s}.0.SelfAttention.relative_attention_bias.weight")
  return r


# ----------------------------------------------------------------------------- configs

def apply_dit_dims(config: ml_collections.ConfigDict, dims: dict) -> None:
  """Sets config.dit (and the latent channels / text width it reads) to a Wan DiT's shape."""
  d = config.dit
  d.width, d.heads, d.depth = dims["heads"] * dims["head_dim"], dims["heads"], dims["layers"]
  d.mlp_width, d.time_freq_dim = dims["ffn_dim"], dims["freq_dim"]
  pt, ph, pw = dims["patch"]
  if pt != 1 or ph != pw:
    raise ValueError(f"a Wan patch of {dims['patch']} is not supported (vdm patches (1, p, p))")
  d.patch = ph
  config.vae.latent_channels = dims["in_channels"]
  config.text.width = dims["text_dim"]


def wan_model_fields(config: ml_collections.ConfigDict) -> None:
  """The options that make vdm's modules Wan2.1's (docs/wan.md lists them)."""
  d = config.dit
  d.attention, d.position, d.qk_norm, d.qk_norm_over = "full", "rope3d", True, "width"
  d.cross_norm, d.modulation, d.text_embed, d.cross_mask = True, "table", "mlp", False
  d.temporal_patch = 1
  t = config.text
  t.position_bias, t.tokenizer = "per_layer", "unigram"
  v = config.vae
  v.layout, v.norm, v.temporal_downsample = "wan", "rms", 4


def _vae_source(name: str, num_res_blocks: int) -> str:
  """A vdm VAE (layout 'wan') parameter name -> the diffusers AutoencoderKLWan tensor."""
  parts = name.split(".")
  leaf = {"kernel": "weight", "bias": "bias", "scale": "gamma"}[parts[-1]]
  parts = parts[:-1]
  resnet = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
            "shortcut": "conv_shortcut"}
  attn = {"norm": "norm", "qkv": "to_qkv", "proj": "proj"}
  if parts[0] in ("quant_conv", "post_quant_conv"):
    return f"{parts[0]}.{leaf}"
  side, what = parts[0], parts[1]
  if what in ("conv_in", "conv_out", "norm_out"):
    return f"{side}.{what}.{leaf}"
  if what in ("mid", "mid2"):
    return f"{side}.mid_block.resnets.{0 if what == 'mid' else 1}.{resnet[parts[2]]}.{leaf}"
  if what == "mid_attn":
    return f"{side}.mid_block.attentions.0.{attn[parts[2]]}.{leaf}"
  n = num_res_blocks
  if side == "encoder" and what == "blocks":
    level, r = divmod(int(parts[2]), n)
    return f"encoder.down_blocks.{level * (n + 1) + r}.{resnet[parts[3]]}.{leaf}"
  if side == "encoder" and what == "downs":
    module = "resample.1" if parts[3] == "spatial" else "time_conv"
    return f"encoder.down_blocks.{int(parts[2]) * (n + 1) + n}.{module}.{leaf}"
  if side == "decoder" and what == "blocks":
    level, r = divmod(int(parts[2]), n + 1)
    return f"decoder.up_blocks.{level}.resnets.{r}.{resnet[parts[3]]}.{leaf}"
  if side == "decoder" and what == "ups":
    module = "resample.1" if parts[3] == "conv" else "time_conv"
    return f"decoder.up_blocks.{parts[2]}.upsamplers.0.{module}.{leaf}"
  raise KeyError(name)


def _vae_value(name: str, shape: tuple, tensor: np.ndarray) -> np.ndarray:
  """A torch tensor in vdm's layout: Conv3d [O, I, t, h, w] / Conv2d [O, I, h, w] -> [t, h, w,
  I, O]; a 1x1 conv as a dense [I, O]; norm gammas [C, 1, ...] -> [C]."""
  a = tensor
  if name.endswith(".kernel") and len(shape) == 5:
    a = a.transpose(2, 3, 4, 1, 0) if a.ndim == 5 else a.transpose(2, 3, 1, 0)[None]
  elif name.endswith(".kernel"):  # the attention's 1x1 convs
    a = a.reshape(a.shape[0], a.shape[1]).T
  elif name.endswith(".scale"):
    a = a.reshape(-1)
  return a


def vae_recipes(get, names_and_shapes, *, num_res_blocks: int) -> dict:
  """vdm VAE (layout 'wan') parameter name -> recipe, from diffusers-named tensors `get`;
  names_and_shapes: the vdm model's (name, shape) pairs (`param_shapes`)."""
  return {name: (lambda name=name, shape=shape: _vae_value(
      name, shape, get(_vae_source(name, num_res_blocks)))) for name, shape in names_and_shapes}


# The released models: the DiT's shape (diffusers' config names), with UMT5-XXL and Wan2.1's VAE.
SIZES = {
    "t2v-1.3b": dict(heads=12, head_dim=128, ffn_dim=8960, layers=30),
    "t2v-14b": dict(heads=40, head_dim=128, ffn_dim=13824, layers=40),
}
UMT5_XXL = dict(width=4096, depth=24, heads=64, mlp=10240, vocab_rows=256384)
# Wan's default negative prompt (its shared config, sample_neg_prompt).
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
                   "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
                   "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")


# Few-step autoregressive generators fine-tuned from Wan2.1-T2V-1.3B, sampled as their public
# inference code does (CausalInferencePipeline): chunks of 3 latent frames under a block-causal
# mask with a KV cache; each step predicts x0 = x_t - sigma v and re-noises it to the next level
# with fresh noise (the `consistency` sampler); after a chunk's last step the model runs once more
# on its clean output at level 0 (`context_noise`) to write the cache; no classifier-free
# guidance. `timesteps` are their `denoising_step_list` / 1000, `shift` the scheduler shift the
# list is warped with (1: not warped).
GENERATORS = {
    # Self-Forcing (Huang et al. 2025), configs/self_forcing_dmd.yaml: [1000, 750, 500, 250]
    # warped with shift 5 -> levels 1, 0.9375, 0.8333, 0.625.
    "self-forcing": dict(timesteps=(1.0, 0.75, 0.5, 0.25), shift=5.0),
    # CausVid (Yin et al. 2025), configs/wan_causal_dmd.yaml: [1000, 757, 522], not warped.
    "causvid": dict(timesteps=(1.0, 0.757, 0.522), shift=1.0),
    # CausVid, configs/wan_causal_dmd_warp_4step_cfg2.yaml: [1000, 750, 500, 250] warped with
    # shift 8 -> levels 1, 0.96, 0.8889, 0.7273.
    "causvid-4step": dict(timesteps=(1.0, 0.75, 0.5, 0.25), shift=8.0),
}


def generator_sampling(config: ml_collections.ConfigDict, name: str) -> None:
  """Sets config.sample to how generator `name` (`GENERATORS`) samples."""
  if name not in GENERATORS:
    raise ValueError(f"unknown generator schedule {name!r}; allowed {list(GENERATORS)}")
  g = GENERATORS[name]
  config.sample.update(mode="autoregressive", chunk=3, sampler="consistency", guidance=1.0,
                       context_noise=0.0, steps=len(g["timesteps"]), timesteps=g["timesteps"],
                       shift=g["shift"], negative_prompt="")


def wan_config(size: str = "t2v-1.3b") -> ml_collections.ConfigDict:
  """vdm's config of a released Wan2.1 T2V model: its modules' shapes and options, and Wan's
  sampling defaults (50 steps, shift 5, guidance 5, its negative prompt, 81 frames at 16 fps,
  480p); the config schema's defaults elsewhere."""
  from vdm.config import defaults
  if size not in SIZES:
    raise ValueError(f"unknown Wan size {size!r}; allowed {list(SIZES)}")
  config = defaults()
  config.name = f"wan2.1-{size}"
  wan_model_fields(config)
  apply_dit_dims(config, dict(SIZES[size], in_channels=16, text_dim=4096, freq_dim=256,
                              patch=[1, 2, 2]))
  config.text.update(UMT5_XXL, max_length=512, freeze=True)
  # fp32 matmuls: what the parity with the reference is measured in (tests/test_wan.py); set
  # dit.matmul_dtype=bfloat16 for speed (benchmarks/wan.py does).
  config.dit.matmul_dtype = "float32"
  config.vae.update(base_channels=96, channel_mult=(1, 2, 4, 4), latent_channels=16,
                    num_res_blocks=2)
  config.data.update(frames=81, fps=16, height=480, width=832)
  config.sample.update(steps=50, shift=5.0, guidance=5.0, fps=16, seconds=81 / 16,
                       max_frames=81, resolution=480, aspect="16:9",
                       negative_prompt=NEGATIVE_PROMPT, chunk=1)
  return config


def _text_dims(text) -> dict:
  """UMT5's shape from its tensors (transformers' names)."""
  depth = len({n.split(".")[2] for n in text if n.startswith("encoder.block.")})
  vocab, width = text.shape("shared.weight")
  heads = text.shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")[1]
  mlp = text.shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")[0]
  return dict(width=width, depth=depth, heads=heads, mlp=mlp, vocab_rows=vocab)


def _vae_dims(directory: str, layout: str, vae) -> tuple[dict, dict]:
  """(config.vae fields, latent statistics) of a Wan2.1 VAE."""
  if layout == "diffusers":
    c = _read_json(os.path.join(directory, "vae", "config.json"))
    fields = dict(base_channels=c["base_dim"], channel_mult=tuple(c["dim_mult"]),
                  latent_channels=c["z_dim"], num_res_blocks=c["num_res_blocks"],
                  temporal_downsample=2 ** sum(c["temperal_downsample"]))
    return fields, dict(mean=c["latents_mean"], std=c["latents_std"])
  z = vae.shape("post_quant_conv.weight")[0]  # Wan2.1_VAE.pth: the release's layout
  fields = dict(base_channels=vae.shape("encoder.conv_in.weight")[0], channel_mult=(1, 2, 4, 4),
                latent_channels=z, num_res_blocks=2, temporal_downsample=4)
  return fields, dict(mean=LATENTS_MEAN[:z], std=LATENTS_STD[:z])


def load_wan(directory: str, *, dtype=None, generator: str | None = None,
             generator_key: str = "generator", schedule: str = "self-forcing"):
  """A Wan2.1 directory (either layout) as (config, tokenizer, vae, denoiser, latent_stats), what
  `vdm.models.load_model_dir` returns for a vdm model directory. Tensors are read one at a time
  onto the default device; dtype None keeps the checkpoint's (bf16 stays bf16).

  generator: a Self-Forcing / CausVid checkpoint (`open_generator`, state dict `generator_key`)
  whose DiT replaces the directory's; the text encoder, VAE and tokenizer stay the directory's,
  and config.sample becomes the generator's (`GENERATORS[schedule]`)."""
  from flax import nnx

  from vdm.config import validate
  from vdm.convert.assemble import materialize, param_shapes
  from vdm.models import build_denoiser, build_vae
  from vdm.text.tokenizer import Tokenizer
  layout = detect_layout(directory)
  if layout is None:
    raise ValueError(f"{directory!r} is not a Wan2.1 directory (diffusers: model_index.json; "
                     f"original: config.json and {ORIGINAL_VAE})")
  dit, vae, text = (open_component(directory, layout, c)
                    for c in ("transformer", "vae", "text_encoder"))
  config = wan_config("t2v-1.3b")
  config.name = f"wan2.1-{os.path.basename(os.path.normpath(directory))}"
  apply_dit_dims(config, dit_dims(directory, layout))
  if generator is not None:
    dit = open_generator(generator, generator_key)
    generator_sampling(config, schedule)
    config.name = f"{schedule}-{os.path.splitext(os.path.basename(generator))[0]}"
  config.text.update(_text_dims(text))
  vae_fields, stats = _vae_dims(directory, layout, vae)
  config.vae.update(vae_fields)
  validate(config)
  spiece = os.path.join(directory, "tokenizer", "spiece.model") if layout == "diffusers" else (
      os.path.join(directory, ORIGINAL_TOKENIZER))
  tokenizer = Tokenizer.load(spiece)
  d, t = config.dit, config.text
  abstract = nnx.eval_shape(lambda: build_denoiser(config, t.vocab_rows))
  recipes = dit_recipes(dit, depth=d.depth, width=d.width, head_dim=d.width // d.heads,
                        prefix="dit.")
  recipes.update(umt5_recipes(text, depth=t.depth, head_dim=t.width // t.heads, prefix="text."))
  denoiser = materialize(abstract, recipes, dtype=dtype,
                        where=directory if generator is None else f"{directory} + {generator}")
  abstract_vae = nnx.eval_shape(lambda: build_vae(config))
  vae_model = materialize(abstract_vae, vae_recipes(vae, param_shapes(abstract_vae),
                                                    num_res_blocks=config.vae.num_res_blocks),
                          dtype=dtype, where=directory)
  latent_stats = {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
  return config, tokenizer, vae_model, denoiser, latent_stats
