"""Builds the Wan2.1 reference models at tiny random configs and writes the parity fixtures.

    .venv-parity/bin/python tools/wan_parity.py --out tests/fixtures/wan     # make wan-fixtures

Needs the reference implementations (`pip install -e '.[parity]'`: torch, diffusers,
transformers); vdm itself never imports them: its tests read what this script writes.

Writes, from one seed:
  diffusers/   the diffusers layout of a Wan2.1 T2V pipeline directory: model_index.json,
               transformer/ vae/ text_encoder/ (config.json + safetensors sharded with an index),
               tokenizer/spiece.model
  original/    the Wan release layout: config.json, diffusion_pytorch_model.safetensors,
               Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth (bf16, as released),
               google/umt5-xxl/spiece.model; keys renamed from the diffusers layout and checked
               to map back through diffusers' own converters (convert_wan_*_to_diffusers)
  io.npz       inputs and the reference outputs (fp32, CPU): the DiT at one shared timestep,
               at a timestep per frame, under a block-causal mask (injected into diffusers'
               attention), and on the first chunk alone; VAE encode (mean, logvar) of a
               17-frame clip and its decode; UMT5 encoder hidden states with padding
  shapes_t2v-1.3b.json, shapes_t2v-14b.json  every tensor of the full-size DiTs (diffusers
               names -> shapes), from the reference classes on the meta device
  self_forcing.pt  a generator checkpoint laid out as Self-Forcing's trainers save one
               (torch.save of {'generator', 'generator_ema', 'critic'}, keys 'model.' + Wan's
               names, the EMA's with the FSDP / activation-checkpointing wrappers' names in
               them): 'generator' is the original DiT above, 'generator_ema' and 'critic' it
               plus small noise (`--only generator` writes just this file)
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil

import numpy as np
import torch

SEED = 0

# The tiny configs (the reference classes' own argument names).
DIT = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
           out_channels=4, text_dim=24, freq_dim=16, ffn_dim=48, num_layers=2,
           cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
# dim_mult and the temporal steps of the real VAE (so the channel changes, shortcuts and key
# indices are those of Wan2.1_VAE.pth), at base_dim 3.
VAE = dict(base_dim=3, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
           temperal_downsample=[False, True, True],
           latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075],
           latents_std=[2.8184, 1.4541, 2.3275, 2.6558])
UMT5 = dict(vocab_size=160, d_model=24, d_kv=4, num_heads=6, d_ff=40, num_layers=2,
            relative_attention_num_buckets=32, relative_attention_max_distance=128,
            feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6)

# The full-size DiTs (diffusers' configs of Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers).
FULL = {"t2v-1.3b": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                         num_layers=30),
        "t2v-14b": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824,
                        num_layers=40)}


# ----------------------------------------------------------------------------- original names

def dit_to_original(name: str) -> str:
  """A diffusers WanTransformer3DModel key -> the Wan release's key."""
  for new, old in (("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
                   ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
                   ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
                   ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
                   ("condition_embedder.time_proj", "time_projection.1"),
                   ("attn1.", "self_attn."), ("attn2.", "cross_attn."),
                   (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
                   (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
                   ("proj_out", "head.head")):
    name = name.replace(new, old)
  if name == "scale_shift_table":
    return "head.modulation"
  name = name.replace("scale_shift_table", "modulation")
  # diffusers' norm2 is Wan's cross-attention norm3 (and there is no norm3 parameter).
  return name.replace(".norm2.", ".norm3.")


def vae_to_original(name: str, num_res_blocks: int = 2, levels: int = 4) -> str:
  """A diffusers AutoencoderKLWan key -> the key in Wan2.1_VAE.pth."""
  res = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma":
         "residual.3.gamma", "conv2": "residual.6", "conv_shortcut": "shortcut"}

  def resnet(rest):
    for new, old in res.items():
      if rest.startswith(new):
        return old + rest[len(new):]
    raise KeyError(rest)

  parts = name.split(".")
  top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
  if parts[0] in top:
    return ".".join([top[parts[0]]] + parts[1:])
  side, what = parts[0], parts[1]
  rest = ".".join(parts[2:])
  if what == "conv_in":
    return f"{side}.conv1.{rest}"
  if what in ("norm_out", "conv_out"):
    return f"{side}.head.{0 if what == 'norm_out' else 2}.{rest}"
  if what == "mid_block":
    kind, i, rest = parts[2], int(parts[3]), ".".join(parts[4:])
    if kind == "attentions":
      return f"{side}.middle.1.{rest}"
    return f"{side}.middle.{2 * i}.{resnet(rest)}"
  if what == "down_blocks":
    i, rest = parts[2], ".".join(parts[3:])
    return f"encoder.downsamples.{i}.{rest if rest.startswith(('resample', 'time_conv')) else resnet(rest)}"
  if what == "up_blocks":
    block, kind = int(parts[2]), parts[3]
    per = num_res_blocks + 2  # resnets + the upsampler of each level
    if kind == "upsamplers":
      return f"decoder.upsamples.{block * per + num_res_blocks + 1}.{'.'.join(parts[5:])}"
    j, rest = int(parts[4]), ".".join(parts[5:])
    return f"decoder.upsamples.{block * per + j}.{resnet(rest)}"
  raise KeyError(name)


def umt5_to_original(name: str) -> str:
  """A transformers UMT5EncoderModel key -> the key in models_t5_umt5-xxl-enc-bf16.pth."""
  if name in ("shared.weight", "encoder.embed_tokens.weight"):
    return "token_embedding.weight"
  if name == "encoder.final_layer_norm.weight":
    return "norm.weight"
  parts = name.split(".")  # encoder.block.i.layer.j.<module>...
  i, j, rest = parts[2], parts[4], ".".join(parts[5:])
  table = {"SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
           "layer_norm.weight": "norm1.weight" if j == "0" else "norm2.weight",
           "SelfAttention.q.weight": "attn.q.weight", "SelfAttention.k.weight": "attn.k.weight",
           "SelfAttention.v.weight": "attn.v.weight", "SelfAttention.o.weight": "attn.o.weight",
           "DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
           "DenseReluDense.wi_1.weight": "ffn.fc1.weight",
           "DenseReluDense.wo.weight": "ffn.fc2.weight"}
  return f"blocks.{i}.{table[rest]}"


# ----------------------------------------------------------------------------- writers

def save_safetensors(state: dict, path: str, dtype=None) -> None:
  from safetensors.torch import save_file
  save_file({k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in state.items()},
            path)


def block_causal_hook(frames: int, tokens_per_frame: int, chunk: int):
  """A forward pre-hook for diffusers' self-attention that adds a block-causal mask."""
  chunk_of = np.arange(frames) // chunk
  allowed = chunk_of[None, :] <= chunk_of[:, None]
  mask = torch.from_numpy(np.repeat(np.repeat(allowed, tokens_per_frame, 0), tokens_per_frame, 1))

  def hook(module, args):
    hidden, encoder, _, rotary = args
    return hidden, encoder, mask[None, None], rotary
  return hook


def build_dit(out: str, arrays: dict) -> None:
  from diffusers import WanTransformer3DModel
  from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
  torch.manual_seed(SEED)
  model = WanTransformer3DModel(**DIT).eval()
  with torch.no_grad():  # the reference inits the tables at 0-ish; make every weight count
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(os.path.join(out, "diffusers", "transformer"), max_shard_size="40KB",
                        safe_serialization=True)
  state = model.state_dict()
  original = {dit_to_original(k): v for k, v in state.items()}
  back = convert_wan_transformer_to_diffusers(dict(original))
  assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state), \
      "the original DiT names do not map back through diffusers' converter"
  save_safetensors(original, os.path.join(out, "original", "diffusion_pytorch_model.safetensors"))
  d = DIT["num_attention_heads"] * DIT["attention_head_dim"]
  with open(os.path.join(out, "original", "config.json"), "w") as f:
    json.dump(dict(_class_name="WanModel", model_type="t2v", dim=d, ffn_dim=DIT["ffn_dim"],
                   freq_dim=DIT["freq_dim"], in_dim=DIT["in_channels"],
                   num_heads=DIT["num_attention_heads"], num_layers=DIT["num_layers"],
                   out_dim=DIT["out_channels"], text_dim=DIT["text_dim"], text_len=512,
                   eps=1e-6, patch_size=list(DIT["patch_size"]), window_size=[-1, -1],
                   qk_norm=True, cross_attn_norm=True), f, indent=2)

  g = torch.Generator().manual_seed(SEED + 1)
  frames, h, w = 6, 4, 6
  x = torch.randn(1, DIT["in_channels"], frames, h, w, generator=g)
  text = torch.randn(1, 7, DIT["text_dim"], generator=g)
  tokens = (h // 2) * (w // 2)
  per_frame = torch.tensor([[900.0, 900.0, 900.0, 400.0, 400.0, 250.0]])
  with torch.no_grad():
    shared = model(x, torch.tensor([500.0]), text, return_dict=False)[0]
    per_token = per_frame.repeat_interleave(tokens, dim=1)
    frame_levels = model(x, per_token, text, return_dict=False)[0]
    first_chunk = model(x[:, :, :3], per_token[:, :3 * tokens], text, return_dict=False)[0]
    hooks = [b.attn1.register_forward_pre_hook(block_causal_hook(frames, tokens, 3))
             for b in model.blocks]
    causal = model(x, per_token, text, return_dict=False)[0]
    for hook in hooks:
      hook.remove()
  arrays.update(dit_x=x.numpy(), dit_text=text.numpy(), dit_t_shared=np.float32(500.0),
                dit_t_frames=per_frame.numpy(), dit_out_shared=shared.numpy(),
                dit_out_frames=frame_levels.numpy(), dit_out_first_chunk=first_chunk.numpy(),
                dit_out_block_causal=causal.numpy())


def build_vae(out: str, arrays: dict) -> None:
  from diffusers import AutoencoderKLWan
  from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
  torch.manual_seed(SEED + 2)
  model = AutoencoderKLWan(**VAE).eval()
  with torch.no_grad():  # norm scales start at 1: randomise them too
    for name, p in model.named_parameters():
      if name.endswith("gamma"):
        p.mul_(1.0 + 0.2 * torch.randn_like(p))
  model.save_pretrained(os.path.join(out, "diffusers", "vae"), max_shard_size="200KB",
                        safe_serialization=True)
  state = model.state_dict()
  original = {vae_to_original(k): v for k, v in state.items()}
  back = convert_wan_vae_to_diffusers(dict(original))
  assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state), \
      "the original VAE names do not map back through diffusers' converter"
  torch.save(original, os.path.join(out, "original", "Wan2.1_VAE.pth"))

  g = torch.Generator().manual_seed(SEED + 3)
  video = torch.rand(1, 3, 17, 16, 16, generator=g) * 2 - 1
  z = torch.randn(1, VAE["z_dim"], 5, 2, 2, generator=g)
  with torch.no_grad():
    dist = model.encode(video).latent_dist
    decoded = model.decode(z, return_dict=False)[0]
  arrays.update(vae_video=video.numpy(), vae_mean=dist.mean.numpy(),
                vae_logvar=dist.logvar.numpy(), vae_z=z.numpy(), vae_decoded=decoded.numpy())


def build_umt5(out: str, arrays: dict) -> None:
  from transformers import UMT5Config, UMT5EncoderModel
  torch.manual_seed(SEED + 4)
  model = UMT5EncoderModel(UMT5Config(**UMT5)).eval()
  model.save_pretrained(os.path.join(out, "diffusers", "text_encoder"), max_shard_size="20KB",
                        safe_serialization=True)
  state = {k: v for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
  original = {umt5_to_original(k): v.to(torch.bfloat16) for k, v in state.items()}
  torch.save(original, os.path.join(out, "original", "models_t5_umt5-xxl-enc-bf16.pth"))
  ids = torch.tensor([[5, 17, 99, 3, 1, 0, 0, 0, 0], [42, 7, 1, 0, 0, 0, 0, 0, 0]])
  mask = (ids != 0).long()
  with torch.no_grad():
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
  arrays.update(umt5_ids=ids.numpy().astype(np.int32), umt5_mask=mask.numpy().astype(bool),
                umt5_hidden=hidden.numpy())


def build_tokenizer(out: str) -> None:
  """A tiny sentencepiece model with T5's ids (pad 0, eos 1, unk 2), as spiece.model."""
  import sentencepiece as spm
  words = ("a red fox runs across the snow in slow motion under a blue sky while the camera "
           "pans left over green hills and a river with boats at sunset").split()
  rng = np.random.default_rng(SEED)
  sentences = [" ".join(rng.choice(words, 8)) for _ in range(400)]
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model,
                                 vocab_size=100, model_type="unigram", pad_id=0, eos_id=1,
                                 unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
  for folder in (os.path.join(out, "diffusers", "tokenizer"),
                 os.path.join(out, "original", "google", "umt5-xxl")):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "spiece.model"), "wb") as f:
      f.write(model.getvalue())


def dump_full_shapes(out: str) -> None:
  """Shapes of every tensor of the full-size DiTs, from the reference class on the meta
  device (nothing is allocated)."""
  from diffusers import WanTransformer3DModel
  for name, cfg in FULL.items():
    with torch.device("meta"):
      model = WanTransformer3DModel(**cfg)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    with open(os.path.join(out, f"shapes_{name}.json"), "w") as f:
      json.dump(dict(config=cfg, count=sum(int(np.prod(s)) for s in shapes.values()),
                     shapes=shapes), f, indent=0, sort_keys=True)


def build_generator(out: str) -> None:
  """self_forcing.pt from the original-layout DiT (see the module docstring)."""
  from safetensors.torch import load_file
  base = load_file(os.path.join(out, "original", "diffusion_pytorch_model.safetensors"))
  g = torch.Generator().manual_seed(SEED + 5)

  def noisy(state):
    return {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in state.items()}

  def wrapped(name):  # what named_parameters() gives under FSDP + activation checkpointing
    if name.startswith("blocks."):
      _, i, rest = name.split(".", 2)
      return f"model.blocks.{i}._fsdp_wrapped_module._checkpoint_wrapped_module.{rest}"
    return f"model.{name}"

  generator = {f"model.{k}": v.clone() for k, v in base.items()}
  ema = {wrapped(k): v.float() for k, v in noisy(base).items()}
  critic = {f"model.{k}": v for k, v in noisy(base).items()}
  torch.save(dict(generator=generator, critic=critic, generator_ema=ema),
             os.path.join(out, "self_forcing.pt"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="tests/fixtures/wan")
  parser.add_argument("--only", choices=("generator",), default=None,
                      help="write only this part (from the fixtures already in --out)")
  args = parser.parse_args()
  torch.set_num_threads(2)
  if args.only == "generator":
    build_generator(args.out)
    return
  shutil.rmtree(args.out, ignore_errors=True)
  for sub in ("diffusers", "original"):
    os.makedirs(os.path.join(args.out, sub), exist_ok=True)
  arrays: dict = {}
  build_dit(args.out, arrays)
  build_vae(args.out, arrays)
  build_umt5(args.out, arrays)
  build_tokenizer(args.out)
  with open(os.path.join(args.out, "diffusers", "model_index.json"), "w") as f:
    json.dump({"_class_name": "WanPipeline", "_diffusers_version": "0.42.1",
               "scheduler": ["diffusers", "UniPCMultistepScheduler"],
               "text_encoder": ["transformers", "UMT5EncoderModel"],
               "tokenizer": ["transformers", "T5TokenizerFast"],
               "transformer": ["diffusers", "WanTransformer3DModel"],
               "vae": ["diffusers", "AutoencoderKLWan"]}, f, indent=2)
  np.savez_compressed(os.path.join(args.out, "io.npz"), **arrays)
  build_generator(args.out)
  dump_full_shapes(args.out)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
  print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
  main()
