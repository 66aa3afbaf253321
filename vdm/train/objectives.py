"""The denoiser's training objective: flow matching with a noise level per frame."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vdm.diffusion import flow_matching_loss, interpolate, sample_levels


def training_levels(rng, batch: int, frames: int, *, kind: str, per_frame_prob: float):
  """Levels [B, T]: one shared level per clip, or, with probability per_frame_prob, one per frame.

  Independent per-frame levels (Diffusion Forcing) are what later lets the same weights run
  autoregressive and rolling modes; shared levels match parallel sampling exactly.
  """
  r_shared, r_frames, r_choice = jax.random.split(rng, 3)
  shared = jnp.broadcast_to(sample_levels(r_shared, (batch, 1), kind=kind), (batch, frames))
  independent = sample_levels(r_frames, (batch, frames), kind=kind)
  use_independent = jax.random.bernoulli(r_choice, per_frame_prob, (batch, 1))
  return jnp.where(use_independent, independent, shared)


def denoiser_loss(model, batch: dict, rng, *, kind: str = "logit_normal",
                  per_frame_prob: float = 0.0, text_dropout: float = 0.1):
  """Flow-matching loss of `model(z_t, levels, ids, mask) -> velocity`.

  batch: 'latents' [B, T, h, w, C] (normalised), 'ids' int32 [B, L], 'mask' bool [B, L],
  'empty_ids'/'empty_mask' [B, L] (the empty prompt). With probability text_dropout a clip's
  caption is replaced by the empty prompt, so the same model also learns the unconditional
  velocity that classifier-free guidance needs.
  """
  x0 = batch["latents"]
  b, t = x0.shape[:2]
  r_levels, r_noise, r_drop = jax.random.split(rng, 3)
  levels = training_levels(r_levels, b, t, kind=kind, per_frame_prob=per_frame_prob)
  noise = jax.random.normal(r_noise, x0.shape, x0.dtype)
  drop = jax.random.bernoulli(r_drop, text_dropout, (b, 1))
  ids = jnp.where(drop, batch["empty_ids"], batch["ids"])
  mask = jnp.where(drop, batch["empty_mask"], batch["mask"])
  velocity = model(interpolate(x0, noise, levels), levels, ids, mask)
  loss = flow_matching_loss(velocity, x0, noise)
  return loss, dict(flow_loss=loss, mean_level=levels.mean())
