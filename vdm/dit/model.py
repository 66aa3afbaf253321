"""A space-time diffusion transformer conditioned on text and on a noise level per frame.

Each block: spatial self-attention within a frame, temporal self-attention across frames at the
same patch position (or, with attention='full', one 3D self-attention over all tokens),
cross-attention from every token to the text, and an MLP. The first two and
the MLP are modulated per frame (adaLN-zero) by the embedding of that frame's own noise level, so a
frame at level 0 (clean context) and a frame at level 1 can share one forward pass.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.dit.audio import AudioBlock, audio_times, audio_video_frames, cross_modal_masks
from vdm.dit.layers import (Attention, Mlp, dense, modulate, patchify, rope3d_angles,
                            rope3d_split, sincos_embedding, spacetime_position_embedding,
                            speed_options, temporal_groups, unpatchify)
from vdm.dit.lora import add_lora
from vdm.parallel.sharding import constrain, logical_axes

# Logical names of the activations (mapped to mesh axes by vdm.parallel, a no-op without a mesh).
_TOKENS = ("batch", "frames", "tokens", "act_embed")  # x [B, T, N, D]

_zeros = nnx.initializers.zeros


class Control(NamedTuple):
  """Conditioning beyond the text (vdm.control.features builds it; either part may be None).

  tokens: [B, T, N, F] added to the tokens through a linear map (per-token maps, e.g. where
    each object is); frames: [B, T, G] added to the per-frame adaLN condition through an MLP
    (per-frame parameters, e.g. the camera); camera_tokens: [B, T, N, E], the camera as
    per-token displacements, added through its own linear map. A model built with F, G or E > 0
    reads zeros for a part that is None: the input of "not given".
  """
  tokens: jax.Array | None = None
  frames: jax.Array | None = None
  camera_tokens: jax.Array | None = None


# Activation checkpointing per block: 'full' recomputes the whole block in the backward pass
# (least memory), 'dots' keeps matmul outputs without a batch dimension (the projections and MLP,
# expensive to recompute) and recomputes the rest (norms, activations, attention softmax).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _remat_block(policy):
  return nnx.remat(lambda block, *args: block(*args), policy=policy)


ATTENTION_LAYOUTS = ("factorized", "full")
MODULATIONS = ("per_block", "table")
# 'linear': one projection of the text, whose mean over its tokens is added to the level's
# embedding; 'mlp': Linear-GELU-Linear (Wan's), the conditioning then being the level's alone.
TEXT_EMBEDS = ("linear", "mlp")
# 'sincos': a fixed 3D sinusoid added to the tokens (absolute positions); 'rope3d': queries and
# keys of every self-attention rotated by their (frame, row, col) (relative positions).
POSITIONS = ("sincos", "rope3d")


def _rope_layout(rope, layout: str, b: int):
  """Per-token (cos, sin) [T, N, P] -> the token order of one self-attention's input:
  'spatial' [B*T, N, P], 'temporal' [B*N, T, P], 'joint' [1, T*N, P]; None stays None.

  Every layout gets the full 3D rotation: a part equal for query and key (the frame within
  spatial attention, row and column within temporal attention) cancels in q . k, so one table
  serves them all."""
  if rope is None:
    return None
  def one(a):
    t, n, p = a.shape
    if layout == "spatial":
      return jnp.tile(a, (b, 1, 1))
    if layout == "temporal":
      return jnp.tile(a.transpose(1, 0, 2), (b, 1, 1))
    return a.reshape(1, t * n, p)
  return tuple(one(a) for a in rope)


class DiTBlock(nnx.Module):
  """One block. `attention`: 'factorized' (spatial attention within each frame, then temporal
  attention across frames at each patch position) or 'full' (one 3D self-attention over every
  token of every frame; the temporal mask is applied frame by frame). Then cross-attention to the
  text and an MLP; adaLN-zero modulation per frame of every self-attention and the MLP."""

  def __init__(self, width: int, heads: int, mlp_ratio: float, *, rngs: nnx.Rngs,
               attention: str = "factorized", qk_norm: bool = False,
               qk_norm_over: str = "head", cross_norm: bool = False,
               modulation: str = "per_block", mlp_width: int = 0,
               matmul_dtype: str = "float32", fast_grads: bool = True,
               attention_kernel: str = "xla"):
    if attention not in ATTENTION_LAYOUTS:
      raise ValueError(f"dit.attention must be one of {ATTENTION_LAYOUTS}, got {attention!r}")
    if modulation not in MODULATIONS:
      raise ValueError(f"dit.modulation must be one of {MODULATIONS}, got {modulation!r}")
    # Pre-norms have no scale or bias: the per-frame adaLN modulation supplies both.
    self.norm, kw = speed_options(matmul_dtype, fast_grads)
    self.attention = attention
    attn = lambda: Attention(width, heads, qk_norm=qk_norm, qk_norm_over=qk_norm_over,  # noqa: E731
                             kernel=attention_kernel, rngs=rngs, **kw)
    if attention == "factorized":
      self.spatial, self.temporal = attn(), attn()
    else:  # its tokens are what parallel.sequence splits (vdm/parallel/attention.py)
      self.joint = Attention(width, heads, qk_norm=qk_norm, qk_norm_over=qk_norm_over,
                             kernel=attention_kernel, sequence_parallel=True, rngs=rngs, **kw)
    self.cross = attn()
    # cross_norm: a LayerNorm with its own scale and bias before cross-attention (Wan's; that
    # input is not modulated), instead of the plain norm.
    self.cross_norm = (nnx.LayerNorm(width, epsilon=1e-6, use_fast_variance=False,
                                     scale_metadata=logical_axes("norm"),
                                     bias_metadata=logical_axes("norm"), rngs=rngs)
                       if cross_norm else None)
    self.mlp = Mlp(width, mlp_width or int(width * mlp_ratio), rngs=rngs, **kw)
    # (shift, scale, gate) per self-attention and for the MLP. 'per_block': this block's own
    # linear map of the conditioning, zero-initialised so that every block starts as the
    # identity (adaLN-zero). 'table': the DiT projects the conditioning once for all blocks and
    # each block adds its learned table (Wan's), a few numbers per block instead of a matrix.
    self.num_modulations = 3 * (3 if attention == "factorized" else 2)
    self.modulation_kind = modulation
    if modulation == "per_block":
      self.modulation = dense(width, self.num_modulations * width, ("embed", "mlp"),
                              kernel_init=_zeros, rngs=rngs, **kw)
    else:
      self.modulation = nnx.Param(
          jax.random.normal(rngs.params(), (self.num_modulations, width)) / width**0.5,
          **logical_axes(None, "embed"))

  def __call__(self, x, cond, text, text_mask, temporal_mask=None, past=None, rope=None):
    """x [B, T, N, D]; cond [B, T, D] (with dit.modulation='table': the shared projection
    [B, T, M * D] of M modulations); text [B, L, D] and text_mask [B, L], or a prompt per
    frame [B, T, L, D] and [B, T, L]; temporal_mask [T, T];
    rope: (cos, sin) [T, N, D/H/2] rotary angles of x's tokens (dit.position='rope3d') or None.

    With `past` = (k, v [B*N, S, H, D/H], valid [S], frame_mask) the self-attention also sees
    cached earlier frames; frame_mask [T, S + T] bool says which cached slots and which of these
    frames each frame attends (None: all; this chunk attends itself fully). Returns (x, (k, v)
    of these frames, each [B*N, T, H, D/H]) then. Both layouts cache in that shape.
    """
    b, t, n, d = x.shape
    if self.modulation_kind == "per_block":
      mods = self.modulation(jax.nn.silu(cond))
    else:
      mods = cond + self.modulation[...].reshape(-1).astype(cond.dtype)
    mods = jnp.split(mods, self.num_modulations, axis=-1)
    gate = lambda g: g[:, :, None, :]  # noqa: E731
    if self.attention == "factorized":
      (shift_s, scale_s, gate_s, shift_t, scale_t, gate_t), mlp_mods = mods[:6], mods[6:]
      h = modulate(self.norm(x), shift_s, scale_s).reshape(b * t, n, d)
      x = x + gate(gate_s) * self.spatial(h, rope=_rope_layout(rope, "spatial", b)
                                          ).reshape(b, t, n, d)

      h = modulate(self.norm(x), shift_t, scale_t).transpose(0, 2, 1, 3).reshape(b * n, t, d)
      rope_t = _rope_layout(rope, "temporal", b)
      if past is None:
        h = self.temporal(h, mask=temporal_mask, rope=rope_t)
      else:
        h, k, v = self.temporal.attend_with_past(h, *past[:3], rope=rope_t, mask=past[3])
      x = x + gate(gate_t) * h.reshape(b, n, t, d).transpose(0, 2, 1, 3)
    else:
      (shift_a, scale_a, gate_a), mlp_mods = mods[:3], mods[3:]
      h = modulate(self.norm(x), shift_a, scale_a).reshape(b, t * n, d)
      if past is None:
        mask = None
        if temporal_mask is not None:  # frame i may attend frame j -> all their tokens
          mask = jnp.repeat(jnp.repeat(temporal_mask, n, axis=0), n, axis=1)
        h = self.joint(h, mask=mask, rope=_rope_layout(rope, "joint", b), frames=t)
      else:
        frame_mask = past[3]
        token_mask = (None if frame_mask is None else
                      jnp.repeat(jnp.repeat(frame_mask, n, axis=0), n, axis=1))
        h, k, v = self.joint.attend_with_past(h, *_tokens_of_frames(*past[:3], b, n),
                                              rope=_rope_layout(rope, "joint", b),
                                              mask=token_mask)
        k, v = (_frames_of_tokens(a, b, t, n) for a in (k, v))
      x = x + gate(gate_a) * h.reshape(b, t, n, d)

    h = self.norm(x) if self.cross_norm is None else self.cross_norm(x)
    if text.ndim == 4:  # a prompt per frame: each frame's tokens attend to their own text
      h = self.cross(h.reshape(b * t, n, d), text.reshape(b * t, *text.shape[2:]),
                     mask=text_mask.reshape(b * t, -1)[:, None, None, :])
    else:
      h = self.cross(h.reshape(b, t * n, d), text, mask=text_mask[:, None, None, :])
    x = x + h.reshape(b, t, n, d)

    shift_m, scale_m, gate_m = mlp_mods
    h = modulate(self.norm(x), shift_m, scale_m)
    x = x + gate(gate_m) * self.mlp(h)
    return x if past is None else (x, (k, v))


class ScalarEmbedding(nnx.Module):
  """An extra per-clip or per-frame scalar condition (a guidance scale, a step size) -> a width-D
  vector added to the level embedding. The output layer starts at zero, so a model given this
  input starts exactly as the model without it (a distilled student starts as its teacher)."""

  def __init__(self, width: int, *, scale: float, rngs: nnx.Rngs):
    self.scale = scale  # brings the value's useful range to the sinusoid's (levels use 1000)
    self.fc1 = dense(width, width, ("embed", "mlp"), rngs=rngs)
    self.fc2 = dense(width, width, ("mlp", "embed"), kernel_init=_zeros, rngs=rngs)

  def __call__(self, value: jax.Array, frames: int, width: int) -> jax.Array:
    """value [B] or [B, T] -> [B, T, width]."""
    value = jnp.asarray(value, jnp.float32)
    if value.ndim == 1:
      value = jnp.broadcast_to(value[:, None], (value.shape[0], frames))
    return self.fc2(jax.nn.silu(self.fc1(sincos_embedding(value * self.scale, width))))


# The scalar conditions a DiT may take besides the levels: name -> sinusoid scale. 'guidance':
# the classifier-free guidance scale (a guidance-distilled student, one forward instead of two);
# 'step': the size of the step the velocity is used for (a shortcut student; 0: the
# instantaneous velocity, as the teacher's).
SCALAR_CONDITIONS = {"guidance": 100.0, "step": 1000.0}


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def _stack_variables(*variables: nnx.Variable) -> nnx.Variable:
  """One Variable holding the values of `variables` (one per layer) along a new leading axis,
  named 'layers' in its sharding metadata (vdm.parallel keeps that axis whole)."""
  names = variables[0].get_metadata().get("out_sharding")
  meta = {} if names is None else dict(out_sharding=("layers",) + tuple(names))
  return variables[0].replace(jnp.stack([v.get_value() for v in variables]), **meta)


def _unstack_variable(variable: nnx.Variable, i: int) -> nnx.Variable:
  """Layer i of a stacked Variable, its metadata as an unrolled layer's."""
  names = variable.get_metadata().get("out_sharding")
  meta = {} if names is None else dict(out_sharding=tuple(names)[1:])
  return variable.replace(variable.get_value()[i], **meta)


def stack_blocks(blocks) -> nnx.Module:
  """Blocks of one structure -> one block whose every Variable has a leading [depth] axis: what
  `jax.lax.scan` runs over with dit.scan_layers (built from the same blocks, the same weights)."""
  states = [nnx.state(block) for block in blocks]
  return nnx.merge(nnx.graphdef(blocks[0]),
                   jax.tree.map(_stack_variables, *states, is_leaf=_is_variable))


def scan_params(params: nnx.State, depth: int) -> nnx.State:
  """Params (or gradients) of an unrolled DiT ('blocks.0', 'blocks.1', ...) -> those of the same
  DiT with dit.scan_layers=True ('blocks.<name>' with a leading [depth] axis); the DiT may sit
  inside a larger model (a Denoiser's 'dit.blocks.0...'). The converter for a checkpoint trained
  one way and run the other; `unscan_params` is its inverse."""
  flat = dict(nnx.to_flat_state(params))
  layers = {}  # (path to 'blocks', path inside a block) -> [Variable of layer 0, 1, ...]
  for path in [p for p in flat if "blocks" in p]:
    i = path.index("blocks")
    key = (path[:i + 1], path[i + 2:])
    layers.setdefault(key, [None] * depth)[int(path[i + 1])] = flat.pop(path)
  flat.update({(*outer, *inner): _stack_variables(*vs) for (outer, inner), vs in layers.items()})
  return nnx.from_flat_state(flat)


def unscan_params(params: nnx.State, depth: int) -> nnx.State:
  """Inverse of `scan_params`: a scanned DiT's Params -> the unrolled DiT's."""
  flat = dict(nnx.to_flat_state(params))
  for path in [p for p in flat if "blocks" in p]:
    i = path.index("blocks")
    stacked = flat.pop(path)
    flat.update({(*path[:i + 1], layer, *path[i + 1:]): _unstack_variable(stacked, layer)
                 for layer in range(depth)})
  return nnx.from_flat_state(flat)


def _tokens_of_frames(k, v, valid, b: int, n: int):
  """Cache [B*N, S, H, Dh] (per patch position, as factorized attention keeps it) -> the full
  layout's [B, S*N, H, Dh] token order (frame-major), valid [S] -> [S*N]."""
  def tokens(a):
    s, heads, dh = a.shape[1:]
    return a.reshape(b, n, s, heads, dh).transpose(0, 2, 1, 3, 4).reshape(b, s * n, heads, dh)
  return tokens(k), tokens(v), jnp.repeat(valid, n)


def _frames_of_tokens(a, b: int, t: int, n: int):
  """[B, T*N, H, Dh] (frame-major tokens) -> [B*N, T, H, Dh] (the cache's layout)."""
  heads, dh = a.shape[2:]
  return a.reshape(b, t, n, heads, dh).transpose(0, 2, 1, 3, 4).reshape(b * n, t, heads, dh)


class DiT(nnx.Module):
  """Velocity model v(z_t, t, text).

  Call with z [B, T, h, w, C] latents, levels [B, T] in [0, 1], text [B, L, Dt], text_mask [B, L];
  returns the predicted velocity [B, T, h, w, C].

  control_token_features F / control_frame_features G / control_camera_token_features E > 0 add
  the inputs of a `Control` (object paths as per-token maps, the camera per frame or per token;
  vdm.control.features): a zero-initialised linear map of the tokens' F (and E) features is
  added to the patch embeddings, an MLP of the frame's G features (last layer zero-initialised)
  to the per-frame adaLN condition. 0: no such input and no parameters (every model trained
  before they existed).

  With audio_channels > 0 it also has an audio token stream (`vdm.dit.audio`): audio latents
  [B, Ta, audio_channels] with their own levels [B, Ta], audio_per_frame audio latent frames per
  pixel frame and video_temporal_downsample pixel frames per latent frame (the causal VAE's
  grouping, frame 0 alone), so Ta = audio_per_frame * pixel frames.
  """

  def __init__(self, *, latent_channels: int, text_width: int, width: int, depth: int,
               heads: int, patch: int, mlp_ratio: float = 4.0, remat: str = "none",
               attention: str = "factorized", temporal_window: int = 0, qk_norm: bool = False,
               matmul_dtype: str = "float32", fast_grads: bool = True,
               position: str = "sincos", scan_layers: bool = False, temporal_patch: int = 1,
               qk_norm_over: str = "head", cross_norm: bool = False,
               modulation: str = "per_block", time_freq_dim: int = 0,
               text_embed: str = "linear", cross_mask: bool = True, mlp_width: int = 0,
               lora_rank: int = 0, lora_alpha: float = 1.0, lora_targets=(),
               attention_kernel: str = "xla", control_token_features: int = 0,
               control_frame_features: int = 0, control_camera_token_features: int = 0,
               audio_channels: int = 0,
               audio_per_frame: int = 0, video_temporal_downsample: int = 1,
               audio_video_attention: bool = True, guidance_input: bool = False,
               step_input: bool = False, rngs: nnx.Rngs):
    if remat not in REMAT_POLICIES:
      raise ValueError(f"dit.remat must be one of {tuple(REMAT_POLICIES)}, got {remat!r}")
    if position not in POSITIONS:
      raise ValueError(f"dit.position must be one of {POSITIONS}, got {position!r}")
    if position == "rope3d":
      rope3d_split(width // heads)  # raises for a head dimension the split cannot serve
    if not isinstance(temporal_patch, int) or temporal_patch < 1:
      raise ValueError(f"dit.temporal_patch must be an integer >= 1, got {temporal_patch!r}")
    if text_embed not in TEXT_EMBEDS:
      raise ValueError(f"dit.text_embed must be one of {TEXT_EMBEDS}, got {text_embed!r}")
    if time_freq_dim % 2:
      raise ValueError(f"dit.time_freq_dim must be even (sin and cos halves), got {time_freq_dim}")
    self.patch, self.width, self.latent_channels = patch, width, latent_channels
    self.modulation, self.text_embed, self.cross_mask = modulation, text_embed, bool(cross_mask)
    self.time_freq_dim = time_freq_dim or width
    self.position, self.head_dim = position, width // heads
    self.temporal_patch = temporal_patch
    patch_dim = temporal_patch * patch * patch * latent_channels  # one token's latent values
    self.remat, self.temporal_window = remat, int(temporal_window)
    self.embed = dense(patch_dim, width, ("patch", "embed"), rngs=rngs)
    if (control_token_features or control_frame_features
        or control_camera_token_features) and temporal_patch > 1:
      raise ValueError(f"control inputs need dit.temporal_patch=1, got {temporal_patch}")
    self.control_token_features = int(control_token_features)
    self.control_frame_features = int(control_frame_features)
    self.control_camera_token_features = int(control_camera_token_features)
    if control_token_features:  # zero-initialised: a new input starts as no change
      self.control_tokens = dense(control_token_features, width, ("patch", "embed"),
                                  kernel_init=_zeros, rngs=rngs)
    if control_camera_token_features:
      self.control_camera_tokens = dense(control_camera_token_features, width,
                                         ("patch", "embed"), kernel_init=_zeros, rngs=rngs)
    if control_frame_features:
      self.control_frames_in = dense(control_frame_features, width, ("patch", "embed"),
                                     rngs=rngs)
      self.control_frames_out = dense(width, width, ("mlp", "embed"), kernel_init=_zeros,
                                      rngs=rngs)
    if modulation == "per_block":
      self.time_mlp = Mlp(width, width, rngs=rngs)
    else:  # Wan's: SiLU, from a sinusoid of its own width; one projection for all blocks
      self.time_mlp = Mlp(self.time_freq_dim, width, out=width, act="silu", in_axis=None,
                          rngs=rngs)
    if text_embed == "linear":
      self.text_proj = dense(text_width, width, ("text_embed", "embed"), rngs=rngs)
      self.pooled_text = dense(width, width, ("embed", "mlp"), rngs=rngs)
    else:
      self.text_mlp = Mlp(text_width, width, out=width, in_axis="text_embed", rngs=rngs)
    # Extra scalar inputs of distilled students (vdm/train/distill.py); absent otherwise, so a
    # model without them has exactly the parameters it always had.
    self.guidance_input, self.step_input = bool(guidance_input), bool(step_input)
    if guidance_input:
      self.guidance_embed = ScalarEmbedding(width, scale=SCALAR_CONDITIONS["guidance"], rngs=rngs)
    if step_input:
      self.step_embed = ScalarEmbedding(width, scale=SCALAR_CONDITIONS["step"], rngs=rngs)
    # matmul_dtype / fast_grads (vdm.dit.fast_ops) apply to the blocks, where the FLOPs are;
    # the embeddings and the output layer stay in fp32.
    blocks = [DiTBlock(width, heads, mlp_ratio, rngs=rngs, attention=attention, qk_norm=qk_norm,
                       qk_norm_over=qk_norm_over, cross_norm=cross_norm, modulation=modulation,
                       mlp_width=mlp_width, matmul_dtype=matmul_dtype, fast_grads=fast_grads,
                       attention_kernel=attention_kernel)
              for _ in range(depth)]
    if modulation == "table":
      self.time_projection = dense(width, blocks[0].num_modulations * width, ("embed", "mlp"),
                                   rngs=rngs)
    self.final_norm, _ = speed_options(matmul_dtype, fast_grads)
    if modulation == "per_block":
      self.final_modulation = dense(width, 2 * width, ("embed", "mlp"), kernel_init=_zeros,
                                    rngs=rngs)
    else:  # (shift, scale) = this table + the level's embedding
      self.final_modulation = nnx.Param(
          jax.random.normal(rngs.params(), (2, width)) / width**0.5, **logical_axes(None, "embed"))
    self.final = dense(width, patch_dim, ("embed", "patch"), kernel_init=_zeros, rngs=rngs)
    # The audio stream is built last, so a seed gives the video weights a video DiT gets.
    self.audio_channels = int(audio_channels)
    if self.audio_channels:
      if (audio_per_frame < 1 or temporal_patch != 1 or scan_layers or position != "sincos"
          or remat != "none" or modulation != "per_block" or text_embed != "linear"):
        raise ValueError("the audio stream needs audio_per_frame >= 1, dit.temporal_patch=1, "
                         "dit.scan_layers=False, dit.position='sincos', dit.remat='none', "
                         "dit.modulation='per_block' and dit.text_embed='linear'")
      self.audio_per_frame, self.video_td = int(audio_per_frame), int(video_temporal_downsample)
      self.audio_embed = dense(audio_channels, width, ("patch", "embed"), rngs=rngs)
      # The modality embedding: marks audio tokens (and fills the channels that carry a video
      # token's row and column).
      self.audio_modality = nnx.Param(0.02 * jax.random.normal(rngs.params(), (width,)))
      self.audio_blocks = nnx.List([
          AudioBlock(width, heads, mlp_ratio, video_attention=audio_video_attention, rngs=rngs,
                     qk_norm=qk_norm, matmul_dtype=matmul_dtype, fast_grads=fast_grads)
          for _ in range(depth)])
      self.audio_final_modulation = dense(width, 2 * width, ("embed", "mlp"),
                                          kernel_init=_zeros, rngs=rngs)
      self.audio_final = dense(width, audio_channels, ("embed", "patch"), kernel_init=_zeros,
                               rngs=rngs)
    # LoRA (vdm.dit.lora) on the blocks' target layers, drawn after every base weight so the
    # base weights are those of the same seed without LoRA.
    if lora_rank:
      for block in blocks:
        add_lora(block, rank=lora_rank, alpha=lora_alpha, targets=tuple(lora_targets),
                 rngs=rngs)
    # scan_layers: one block with stacked weights, run by jax.lax.scan (one block traced and
    # compiled whatever the depth). Built from the same per-layer blocks, so the same seed gives
    # the same weights either way.
    self.scan_layers, self.depth = bool(scan_layers), depth
    self.blocks = stack_blocks(blocks) if scan_layers else nnx.List(blocks)

  @classmethod
  def from_config(cls, cfg, *, latent_channels: int, text_width: int, rngs: nnx.Rngs,
                  audio=None, audio_per_frame: int = 0,
                  video_temporal_downsample: int = 1, **control) -> "DiT":
    """Builds from the config's `dit` section (vdm/config/t2v.py documents each field); with
    the `audio` section of an audio.enabled config, also the audio stream; `control`:
    control_token_features / control_frame_features / control_camera_token_features
    (vdm.control.features)."""
    with_audio = audio is not None and audio.enabled
    return cls(latent_channels=latent_channels, text_width=text_width, width=cfg.width,
               depth=cfg.depth, heads=cfg.heads, patch=cfg.patch, mlp_ratio=cfg.mlp_ratio,
               remat=cfg.remat, attention=cfg.attention, temporal_window=cfg.temporal_window,
               qk_norm=cfg.qk_norm, matmul_dtype=cfg.matmul_dtype, fast_grads=cfg.fast_grads,
               position=cfg.position, scan_layers=cfg.scan_layers,
               temporal_patch=cfg.temporal_patch, qk_norm_over=cfg.qk_norm_over,
               cross_norm=cfg.cross_norm, modulation=cfg.modulation,
               time_freq_dim=cfg.time_freq_dim, text_embed=cfg.text_embed,
               cross_mask=cfg.cross_mask, mlp_width=cfg.mlp_width, lora_rank=cfg.lora_rank,
               lora_alpha=cfg.lora_alpha, lora_targets=cfg.lora_targets,
               attention_kernel=cfg.attention_kernel,
               audio_channels=audio.latent_channels if with_audio else 0,
               audio_per_frame=audio_per_frame if with_audio else 0,
               video_temporal_downsample=video_temporal_downsample,
               audio_video_attention=bool(audio.video_attention) if with_audio else True,
               guidance_input=cfg.guidance_input, step_input=cfg.step_input,
               rngs=rngs, **control)

  def __call__(self, z, levels, text, text_mask, temporal_mask=None, frame_offset=0,
               control: Control | None = None, audio=None, audio_levels=None, *,
               guidance=None, step=None):
    """z [B, T, h, w, C]; levels [B, T]; text [B, L, text_width] and text_mask [B, L], or a
    prompt per frame [B, T, L, text_width] and [B, T, L] (each frame attends to its own);
    temporal_mask [T, T] bool or None (all frames see each other); frame_offset: position of
    frame 0 (int or traced scalar; with dit.position='rope3d' only differences of positions
    matter, so it changes nothing). Returns the velocity [B, T, h, w, C]; with audio [B, Ta,
    audio_channels] and audio_levels [B, Ta] (an audio model), (velocity, audio velocity).
    guidance [B] (dit.guidance_input): the guidance scale the velocity is guided by; step [B] or
    [B, T] (dit.step_input): the step size it is used for (None: 0, the instantaneous velocity).

    With dit.temporal_patch = pt > 1 the frames are grouped into token frames (frame 0 alone,
    then groups of pt; `vdm.dit.layers.temporal_groups`): the frames of a group must share one
    level and one row and column of temporal_mask (each group is read at its first frame),
    frame_offset and dit.temporal_window count token frames. control: the `Control` inputs of
    a model built with them (None: none given)."""
    conditions = dict(guidance=guidance, step=step)
    if audio is None:
      return self._forward(z, levels, text, text_mask, temporal_mask, frame_offset=frame_offset,
                           control=control, conditions=conditions)[0]
    if not self.audio_channels:
      raise ValueError("this DiT has no audio stream (audio.enabled=False)")
    return self._forward(z, levels, text, text_mask, temporal_mask, frame_offset=frame_offset,
                         control=control, audio=(audio, audio_levels),
                         conditions=conditions)[0]

  def forward_cached(self, z, levels, text, text_mask, cache, frame_offset, frame_mask=None,
                     control: Control | None = None, *, guidance=None, step=None):
    """One chunk of frames after cached earlier ones (autoregressive generation).

    Args:
      z: [B, k, h, w, C] the chunk's latents; levels [B, k].
      cache: `vdm.generate.kv_cache.KVCache` with k, v [depth, B*N, S, H, D/H], valid [S].
      frame_offset: index of the chunk's first frame in the whole clip (for positions).
      frame_mask: [k, S + k] bool, which cache slots and which of the k frames each frame
        attends (several chunks at once: rolling generation), or None: every valid slot and
        every frame of the chunk.
      control: the chunk's `Control` inputs ([B, k, ...]) or None.
      guidance, step: the scalar conditions, as in `__call__`.
    Returns:
      (velocity [B, k, h, w, C], chunk keys and values, each [depth, B*N, k, H, D/H]).
    Equals the full forward under a block-causal temporal mask whose last block is this chunk
    (with frame_mask: under that mask's rows).
    """
    if self.temporal_patch > 1:
      raise ValueError(f"the KV-cached forward needs dit.temporal_patch=1 (this model has "
                       f"{self.temporal_patch}): autoregressive chunks of grouped frames are "
                       "not supported")
    return self._forward(z, levels, text, text_mask, None, cache, frame_offset, control,
                         frame_mask=frame_mask, conditions=dict(guidance=guidance, step=step))

  def _control_inputs(self, control: Control | None, b: int, t: int, n: int):
    """(tokens [B, T, N, F], frames [B, T, G], camera_tokens [B, T, N, E]) of `control`, zeros
    for a part not given; None for a part the model has no input for (given anyway: an
    error)."""
    control = Control() if control is None else control
    out = []
    for name, size, shape in (("tokens", self.control_token_features, (b, t, n)),
                              ("frames", self.control_frame_features, (b, t)),
                              ("camera_tokens", self.control_camera_token_features, (b, t, n))):
      value = getattr(control, name)
      if not size:
        if value is not None:
          raise ValueError(f"control {name} given to a DiT built without them "
                           "(control.trajectory / control.camera off)")
        out.append(None)
      else:
        out.append(jnp.zeros(shape + (size,)) if value is None else value)
    return out

  def _condition(self, name: str, value, batch: int, frames: int) -> jax.Array | float:
    """The embedding [B, T, D] of scalar condition `name` (0 when the model lacks the input)."""
    takes = getattr(self, f"{name}_input")
    if not takes:
      if value is not None:
        raise ValueError(f"this DiT takes no {name} input (dit.{name}_input=False)")
      return 0.0
    if value is None:
      if name == "guidance":
        raise ValueError("this DiT is guidance-distilled (dit.guidance_input=True): pass the "
                         "guidance scale")
      value = jnp.zeros((batch,), jnp.float32)
    return getattr(self, f"{name}_embed")(value, frames, self.width)

  def _forward(self, z, levels, text, text_mask, temporal_mask, cache=None, frame_offset=0,
               control=None, audio=None, frame_mask=None, conditions=None):
    b, frames, h, w, _ = z.shape
    if h % self.patch or w % self.patch:
      raise ValueError(f"latent size {h}x{w} is not divisible by dit.patch={self.patch}")
    # The model computes in its parameters' dtype: bf16 parameters (a stage's precision =
    # bfloat16) make bf16 activations; float32 ones leave everything as it was.
    z, text = z.astype(self.embed.kernel.dtype), text.astype(self.embed.kernel.dtype)
    x = self.embed(patchify(z, self.patch, self.temporal_patch))
    t = x.shape[1]  # token frames
    control_tokens, control_frames, camera_tokens = self._control_inputs(control, b, t,
                                                                         x.shape[2])
    if control_tokens is not None:
      x = x + self.control_tokens(control_tokens.astype(x.dtype))
    if camera_tokens is not None:
      x = x + self.control_camera_tokens(camera_tokens.astype(x.dtype))
    if self.temporal_patch > 1:  # one level and one mask row per token frame: its first frame's
      first = temporal_groups(frames, self.temporal_patch)[:, 0]
      levels = levels[:, first]
      if text.ndim == 4:
        text, text_mask = text[:, first], text_mask[:, first]
      if temporal_mask is not None:
        temporal_mask = temporal_mask[first][:, first]
    if self.temporal_window and cache is None:
      # Local temporal attention: frames further apart than the window do not see each other.
      # (With a KV cache, the cache's slots bound the context; the pipeline sizes them.)
      i = jnp.arange(t)
      band = jnp.abs(i[:, None] - i[None, :]) <= self.temporal_window
      temporal_mask = band if temporal_mask is None else temporal_mask & band
    rows, cols = h // self.patch, w // self.patch
    rope = None
    if self.position == "sincos":
      # Fixed embeddings are made in fp32; cast so bf16 runs stay bf16 (a no-op in fp32).
      x = x + spacetime_position_embedding(t, rows, cols, self.width,
                                           frame_offset)[None].astype(x.dtype)
    else:  # computed once, shared by every block's self-attentions
      angles = rope3d_angles(t, rows, cols, self.head_dim, frame_offset)
      rope = (jnp.cos(angles), jnp.sin(angles))
    x = constrain(x, _TOKENS)

    per_frame_text = text.ndim == 4
    if not self.cross_mask:
      # Wan's convention: the text encoder's output past each prompt's length is zeroed and
      # every one of the L positions is attended.
      text = text * text_mask[..., None].astype(text.dtype)
      text_mask = jnp.ones_like(text_mask)
    # Levels are scaled by 1000 so the sinusoid resolves the small differences between steps.
    cond = self.time_mlp(sincos_embedding(levels * 1000.0, self.time_freq_dim).astype(x.dtype))
    if self.text_embed == "linear":
      text = self.text_proj(text)
      weights = text_mask[..., None].astype(text.dtype)
      pooled = self.pooled_text((text * weights).sum(-2)
                                / jnp.maximum(weights.sum(-2), 1.0))  # [B, (T,) D]
      cond = cond + (pooled if per_frame_text else pooled[:, None, :])
    else:  # Wan's: no pooled text (the audio stream, which reads it, needs 'linear')
      text, pooled = self.text_mlp(text), None
    text = constrain(text, ("batch",) + ("frames",) * per_frame_text
                     + ("text_tokens", "act_embed"))
    if control_frames is not None:
      cond = cond + self.control_frames_out(jax.nn.gelu(self.control_frames_in(
          control_frames.astype(x.dtype))))
    for name, value in (conditions or {}).items():
      if value is not None and jnp.ndim(value) == 2 and self.temporal_patch > 1:
        value = value[:, temporal_groups(frames, self.temporal_patch)[:, 0]]  # per token frame
      cond = cond + self._condition(name, value, b, t)
    cond = constrain(cond, ("batch", "frames", "act_embed"))
    block_cond = cond if self.modulation == "per_block" else self.time_projection(
        jax.nn.silu(cond))

    if audio is not None:
      if per_frame_text:
        raise ValueError("a prompt per frame is not supported with the audio stream")
      return self._joint_blocks(x, cond, text, text_mask, temporal_mask, pooled, frame_offset,
                                audio, (h, w, frames))
    if self.scan_layers:
      x, kv = self._scan_blocks(x, block_cond, text, text_mask, temporal_mask, rope, cache,
                                frame_mask)
    else:
      x, kv = self._unrolled_blocks(x, block_cond, text, text_mask, temporal_mask, rope, cache,
                                    frame_mask)
    return self._video_out(x, cond, (h, w, frames)), kv

  def _video_out(self, x, cond, size):
    """Final adaLN and projection: tokens [B, T, N, D] -> velocity [B, T, h, w, C]."""
    h, w, frames = size
    if self.modulation == "per_block":
      shift, scale = jnp.split(self.final_modulation(jax.nn.silu(cond)), 2, axis=-1)
    else:  # Wan's: (shift, scale) = the table + the level's embedding
      table = self.final_modulation[...].astype(cond.dtype)
      shift, scale = table[0] + cond, table[1] + cond
    x = self.final(modulate(self.final_norm(x), shift, scale))
    return unpatchify(x, self.patch, h, w, self.temporal_patch, frames)

  def _joint_blocks(self, x, cond, text, text_mask, temporal_mask, pooled, frame_offset, audio,
                    size):
    """Video blocks interleaved with the audio stream's (`vdm.dit.audio`); returns ((video
    velocity, audio velocity), None)."""
    a, a_levels = audio
    num_audio = a.shape[1]
    frame_of_audio = audio_video_frames(num_audio, self.audio_per_frame, self.video_td)
    if a_levels.shape != a.shape[:2]:
      raise ValueError(f"audio levels {a_levels.shape} must be [B, Ta] for audio {a.shape}")
    if int(frame_of_audio[-1]) >= x.shape[1]:
      raise ValueError(f"{num_audio} audio latent frames reach past the {x.shape[1]} video "
                       "latent frames")
    times = frame_offset + jnp.asarray(audio_times(num_audio, self.audio_per_frame,
                                                   self.video_td))
    d_time = (self.width // 3) // 2 * 2  # the time channels of spacetime_position_embedding
    position = jnp.pad(sincos_embedding(times, d_time), ((0, 0), (0, self.width - d_time)))
    a = self.audio_embed(a) + position[None].astype(x.dtype) + self.audio_modality[...]
    cond_a = self.time_mlp(sincos_embedding(a_levels * 1000.0, self.width).astype(x.dtype))
    cond_a = cond_a + pooled[:, None, :]  # the projected pooled text, as the video's
    masks = cross_modal_masks(temporal_mask, frame_of_audio)
    for block, audio_block in zip(self.blocks, self.audio_blocks):
      x = constrain(block(x, cond, text, text_mask, temporal_mask), _TOKENS)
      a, x = audio_block(a, cond_a, x, cond, text, text_mask, masks)
    shift, scale = jnp.split(self.audio_final_modulation(jax.nn.silu(cond_a)), 2, axis=-1)
    a = self.audio_final(modulate(self.final_norm(a), shift, scale))
    return (self._video_out(x, cond, size), a), None

  def _unrolled_blocks(self, x, cond, text, text_mask, temporal_mask, rope, cache,
                       frame_mask=None):
    """The blocks one after another; returns (x, None or this chunk's (k, v) [depth, ...])."""
    new_k, new_v = [], []
    for i, block in enumerate(self.blocks):
      if cache is None and self.remat != "none":
        x = _remat_block(REMAT_POLICIES[self.remat])(block, x, cond, text, text_mask,
                                                      temporal_mask, None, rope)
      elif cache is None:
        x = block(x, cond, text, text_mask, temporal_mask, rope=rope)
      else:
        x, (k, v) = block(x, cond, text, text_mask,
                          past=(cache.k[i], cache.v[i], cache.valid, frame_mask), rope=rope)
        new_k.append(k)
        new_v.append(v)
      x = constrain(x, _TOKENS)
    return x, ((jnp.stack(new_k), jnp.stack(new_v)) if cache is not None else None)

  def _scan_blocks(self, x, cond, text, text_mask, temporal_mask, rope, cache, frame_mask=None):
    """The stacked blocks under jax.lax.scan: layer i's weights (and cached keys and values,
    [depth, ...] like the weights) are the i-th slice. Same results as `_unrolled_blocks`."""
    graphdef, weights = nnx.split(self.blocks)

    def layer(x, slices):
      block = nnx.merge(graphdef, slices[0])
      if cache is None:
        return constrain(block(x, cond, text, text_mask, temporal_mask, rope=rope), _TOKENS), None
      x, kv = block(x, cond, text, text_mask, past=(*slices[1], cache.valid, frame_mask),
                    rope=rope)
      return constrain(x, _TOKENS), kv

    if cache is None and self.remat != "none":  # the policy applies to each layer in the scan
      layer = jax.checkpoint(layer, policy=REMAT_POLICIES[self.remat])
    past = None if cache is None else (cache.k, cache.v)
    return jax.lax.scan(layer, x, (weights, past))
