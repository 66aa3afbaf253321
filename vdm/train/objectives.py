"""The denoiser's training objective: flow matching with a noise level per frame.

Three level schemes share one loss, so models trained with each are compared at equal compute:
  * shared levels (the usual parallel model): one level per clip;
  * Diffusion Forcing: with probability `per_frame_levels_prob` an independent level per frame;
  * teacher forcing (the usual autoregressive model): earlier chunks clean (level 0), one chunk at
    a shared level, later chunks pure noise; only that chunk is scored.
A batch may be trained under a block-causal temporal mask (probability `causal_prob`, chunk size
drawn from `causal_chunks`), so the same weights can run autoregressive and rolling modes, whose
masks are block-causal, and parallel mode, whose mask is full. A random `frame_offset` in
[0, max_frame_offset] shifts the frame positions, so positions beyond the training length (long
autoregressive clips with a KV cache) are ones the model has seen. `temporal_consistency_weight`
adds `vdm.diffusion.temporal_consistency_loss` (an ablation); `motion_supervision_weight` adds
it along the
exact ground-truth flow (motion supervision: batch 'latent_flow' and 'flow_valid'). The names
are the fields of the config's `diffusion` section, which the loss takes whole. With a DiT
whose `temporal_patch` > 1 (several latent frames per token frame) the per-frame levels are
drawn per token frame, so the frames of a group share one level, as the model requires.
Extension training (`given_frames`, `given_prob`): with probability `given_prob` a clip's first
`given_frames` latent frames are clean (level 0) and not scored, the rest keep their levels, so
the model learns the extension / video-prediction mode (given frames pinned at level 0) directly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vdm.diffusion import flow_matching_loss, interpolate, temporal_consistency_loss
from vdm.diffusion.objectives import sample_timesteps
from vdm.dit.layers import token_frame_of
from vdm.generate.modes import block_causal_mask, chunk_ids


def training_levels(rng, batch: int, frames: int, *, kind: str, per_frame_prob: float,
                    temporal_patch: int = 1):
  """Levels [B, T]: one shared level per clip, or, with probability per_frame_prob, one per frame.

  Independent per-frame levels (Diffusion Forcing) are what later lets the same weights run
  autoregressive and rolling modes; shared levels match parallel sampling exactly. With
  temporal_patch > 1 "per frame" means per token frame (`vdm.dit.layers.token_frame_of`): the
  latent frames the DiT groups into one token get one level.
  """
  r_shared, r_frames, r_choice = jax.random.split(rng, 3)
  shared = jnp.broadcast_to(sample_timesteps(r_shared, (batch, 1), kind=kind), (batch, frames))
  group = token_frame_of(frames, temporal_patch)  # [T]; the identity when temporal_patch = 1
  independent = sample_timesteps(r_frames, (batch, int(group[-1]) + 1), kind=kind)[:, group]
  use_independent = jax.random.bernoulli(r_choice, per_frame_prob, (batch, 1))
  return jnp.where(use_independent, independent, shared)


def teacher_forcing_levels(rng, batch: int, ids: jax.Array, *, kind: str):
  """Levels and frame weights [B, T] for teacher forcing under chunk ids [T] (see `chunk_ids`).

  Each clip draws a target chunk c: chunks < c are clean context (0), chunk c is at one level,
  chunks > c are pure noise (1; a block-causal mask hides them from chunk c). Weights mark chunk c.
  """
  r_chunk, r_level = jax.random.split(rng)
  num_chunks = ids.max() + 1
  target = jax.random.randint(r_chunk, (batch, 1), 0, num_chunks)
  level = sample_timesteps(r_level, (batch, 1), kind=kind)
  levels = jnp.where(ids[None] < target, 0.0, jnp.where(ids[None] == target, level, 1.0))
  return levels, (ids[None] == target).astype(jnp.float32)


def pin_given_frames(rng, levels: jax.Array, given: int, prob: float):
  """Extension training: (levels [B, T], frame weights [B, T] float32).

  With probability `prob` per clip the first `given` frames get level 0 (clean context, as the
  given frames of the extension mode are at sampling) and weight 0: at level 0 the velocity
  target eps - x0 holds noise the model never saw, so scoring those frames would only teach it to
  predict -x0 blindly. Other clips keep `levels` and weight 1 everywhere.
  """
  b, t = levels.shape
  if not 0 <= given < t:
    raise ValueError(f"given frames must be in [0, {t - 1}] for {t} latent frames, got {given}")
  pinned = jax.random.bernoulli(rng, prob, (b, 1)) & (jnp.arange(t)[None] < given)
  return jnp.where(pinned, 0.0, levels), (~pinned).astype(jnp.float32)


def training_mask(rng, frames: int, *, causal_prob: float, causal_chunks=(1,)):
  """(mask [T, T] bool, chunk ids [T]) for one batch: full attention (one chunk), or with
  probability causal_prob block-causal with a chunk size drawn uniformly from causal_chunks."""
  masks = np.stack([np.ones((frames, frames), bool)]
                   + [block_causal_mask(frames, k) for k in causal_chunks])
  ids = np.stack([np.zeros(frames, np.int32)] + [chunk_ids(frames, k) for k in causal_chunks])
  r_causal, r_which = jax.random.split(rng)
  which = jnp.where(jax.random.bernoulli(r_causal, causal_prob),
                    jax.random.randint(r_which, (), 1, len(masks)), 0)
  return jnp.asarray(masks)[which], jnp.asarray(ids)[which]


def training_inputs(r_levels, r_mask, r_offset, r_given, batch: int, frames: int, cfg, *,
                    temporal_patch: int = 1):
  """(levels [B, T], frame weights [B, T] or None, temporal mask [T, T], frame offset) of one
  batch under the level scheme of `cfg` (the config's `diffusion` section; see the module
  docstring), each drawn from its own key. Distillation draws its students' inputs with the
  same scheme as the teacher's training, so the student serves every mode the teacher does."""
  kind = cfg.timestep_sampling
  temporal_mask, ids_of_frame = training_mask(r_mask, frames, causal_prob=cfg.causal_prob,
                                              causal_chunks=tuple(cfg.causal_chunks))
  if cfg.teacher_forcing:
    levels, weights = teacher_forcing_levels(r_levels, batch, ids_of_frame, kind=kind)
  else:
    levels = training_levels(r_levels, batch, frames, kind=kind,
                             per_frame_prob=cfg.per_frame_levels_prob,
                             temporal_patch=temporal_patch)
    weights = None
    if cfg.given_prob > 0:  # its own key: runs without it keep their random streams bit for bit
      levels, weights = pin_given_frames(r_given, levels, cfg.given_frames, cfg.given_prob)
  offset = jax.random.randint(r_offset, (), 0, cfg.max_frame_offset + 1)
  return levels, weights, temporal_mask, offset


def denoiser_loss(model, batch: dict, rng, cfg, *, temporal_patch: int = 1):
  """Flow-matching loss of `model(z_t, levels, ids, mask, temporal_mask, frame_offset) -> velocity`.

  batch: 'latents' [B, T, h, w, C] (normalised), 'ids' int32 [B, L], 'mask' bool [B, L],
  'empty_ids'/'empty_mask' [B, L] (the empty prompt). cfg: the config's `diffusion` section
  (vdm/config/t2v.py documents each field; `vdm.config.section('diffusion', ...)` builds one).
  With probability cfg.text_dropout a clip's caption is replaced by the empty prompt, so the same
  model also learns the unconditional velocity that classifier-free guidance needs. Level
  schemes and masks: see the module docstring.
  temporal_patch: the DiT's (levels shared within its groups of frames; block-causal masks and
  teacher forcing are not offered for grouped frames).
  """
  teacher_forcing = cfg.teacher_forcing
  causal_prob, given_prob = cfg.causal_prob, cfg.given_prob
  if temporal_patch > 1 and (causal_prob > 0 or teacher_forcing):
    raise ValueError("block-causal training (causal_prob > 0, teacher forcing) needs "
                     f"dit.temporal_patch=1, got {temporal_patch}")
  if given_prob > 0 and (teacher_forcing or temporal_patch > 1):
    raise ValueError("extension training (given_prob > 0) needs teacher_forcing=False and "
                     f"dit.temporal_patch=1, got {teacher_forcing}, {temporal_patch}")
  x0 = batch["latents"]
  b, t = x0.shape[:2]
  r_levels, r_noise, r_drop, r_mask, r_offset = jax.random.split(rng, 5)
  levels, weights, temporal_mask, offset = training_inputs(
      r_levels, r_mask, r_offset, jax.random.fold_in(rng, 1), b, t, cfg,
      temporal_patch=temporal_patch)
  noise = jax.random.normal(r_noise, x0.shape, x0.dtype)
  drop = jax.random.bernoulli(r_drop, cfg.text_dropout, (b, 1))
  ids = jnp.where(drop, batch["empty_ids"], batch["ids"])
  mask = jnp.where(drop, batch["empty_mask"], batch["mask"])
  x_t = interpolate(x0, noise, levels)
  velocity = model(x_t, levels, ids, mask, temporal_mask, offset)
  flow = flow_matching_loss(velocity, x0, noise, weights)
  metrics = dict(flow_loss=flow, mean_level=levels.mean())
  loss = flow
  if cfg.temporal_consistency_weight:  # an ablation (configs/temporal_ablations.py)
    consistency = temporal_consistency_loss(velocity, x_t, levels, x0)
    loss = loss + cfg.temporal_consistency_weight * consistency
    metrics["consistency_loss"] = consistency
  if cfg.motion_supervision_weight:  # an ablation: needs the data's exact flow
    motion = temporal_consistency_loss(velocity, x_t, levels, x0, flow=batch["latent_flow"],
                                       valid=batch["flow_valid"])  # vdm.data.simple.latent_motion
    loss = loss + cfg.motion_supervision_weight * motion
    metrics["motion_loss"] = motion
  return loss, metrics
