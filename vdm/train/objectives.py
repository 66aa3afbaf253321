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
`train_shift` > 1 moves every drawn level toward noise (sample.shift's map), so more of the
training is spent where a clip's layout and motion are decided.
Extension training (`given_frames`, `given_prob`): with probability `given_prob` a clip's first
`given_frames` latent frames are clean (level 0) and not scored, the rest keep their levels, so
the model learns the extension / video-prediction mode (given frames pinned at level 0) directly.

A joint audio-video model (config.audio.enabled; batch 'audio_latents') trains both streams in
one pass: each audio latent frame takes the level (and score weight) of the video latent frame
shown at its time (`vdm.dit.audio.audio_video_frames`), so whatever scheme drew the video's
levels holds for the audio too; then with probability `given_video_prob` the video is given
(level 0, unscored: audio for a given video) and, in other clips, with `given_audio_prob` the
audio is (video for a given audio). Loss = video flow loss + `loss_weight` x audio flow loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vdm.diffusion import flow_matching_loss, interpolate, temporal_consistency_loss
from vdm.diffusion.objectives import sample_timesteps, shifted_levels
from vdm.dit.audio import audio_video_frames
from vdm.dit.layers import token_frame_of
from vdm.dit.model import Control
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
  if cfg.train_shift != 1.0:  # 0 (given, clean context) and 1 (pure noise) stay put
    levels = shifted_levels(levels, cfg.train_shift)
  offset = jax.random.randint(r_offset, (), 0, cfg.max_frame_offset + 1)
  return levels, weights, temporal_mask, offset


def drop_control(rng, batch: dict, *, dropout: float, objects: int):
  """The `vdm.dit.model.Control` of a batch with each clip's object paths (per object) and
  camera path dropped (zeroed: 'not given') with probability `dropout`; None when the batch has
  no control inputs. 'control_tokens' [B, T, N, F] keep the object slot last (F = ... x K,
  vdm.control.features), 'control_frames' [B, T, G] and 'control_camera_tokens' [B, T, N, E]
  carry a given-flag last."""
  tokens, frames = batch.get("control_tokens"), batch.get("control_frames")
  camera_tokens = batch.get("control_camera_tokens")
  if tokens is None and frames is None and camera_tokens is None:
    return None
  r_objects, r_camera = jax.random.split(rng)
  if tokens is not None:
    b, t, n, f = tokens.shape
    keep = jax.random.bernoulli(r_objects, 1.0 - dropout, (b, 1, 1, 1, objects))
    tokens = (tokens.reshape(b, t, n, f // objects, objects) * keep).reshape(b, t, n, f)
  if frames is not None:
    frames = frames * jax.random.bernoulli(r_camera, 1.0 - dropout, (frames.shape[0], 1, 1))
  if camera_tokens is not None:  # the same draw as a per-frame path would get
    camera_tokens = camera_tokens * jax.random.bernoulli(
        r_camera, 1.0 - dropout, (camera_tokens.shape[0], 1, 1, 1))
  return Control(tokens, frames, camera_tokens)


def audio_levels_and_weights(rng, levels, weights, frame_of_audio, *, given_video_prob: float,
                             given_audio_prob: float):
  """The joint model's levels and score weights (see the module docstring).

  levels [B, T] and weights [B, T] (None: all 1) of the video; frame_of_audio int [Ta]. Returns
  (video levels, video weights, audio levels [B, Ta], audio weights [B, Ta]), weights float32.
  """
  b, t = levels.shape
  weights = jnp.ones((b, t), jnp.float32) if weights is None else weights
  a_levels, a_weights = levels[:, frame_of_audio], weights[:, frame_of_audio]
  u = jax.random.uniform(rng, (b, 1))
  video_given = u < given_video_prob
  audio_given = (u >= given_video_prob) & (u < given_video_prob + given_audio_prob)
  return (jnp.where(video_given, 0.0, levels), jnp.where(video_given, 0.0, weights),
          jnp.where(audio_given, 0.0, a_levels), jnp.where(audio_given, 0.0, a_weights))


def switched_text(encoder, ids, mask, after_ids, after_mask, switch_frame, frames: int):
  """A prompt per latent frame for prompt-switch training (vdm.train.batches.prompt_switches):
  frames before switch_frame [B] read the caption (ids, mask [B, L]), the rest the one after
  it (after_ids, after_mask [B, L]). Returns (text [B, T, L, D], mask [B, T, L]), which the DiT
  takes as it does a timeline's prompts at sampling time."""
  b = ids.shape[0]
  text = encoder(jnp.concatenate([ids, after_ids]), jnp.concatenate([mask, after_mask]))
  after = (jnp.arange(frames)[None] >= switch_frame[:, None])[..., None]  # [B, T, 1]
  return (jnp.where(after[..., None], text[b:, None], text[:b, None]),
          jnp.where(after, after_mask[:, None], mask[:, None]))


def denoiser_loss(model, batch: dict, rng, cfg, *, temporal_patch: int = 1, control=None,
                  audio=None, audio_per_frame: int = 0, video_temporal_downsample: int = 1):
  """Flow-matching loss of `model(z_t, levels, ids, mask, temporal_mask, frame_offset) -> velocity`.

  batch: 'latents' [B, T, h, w, C] (normalised), 'ids' int32 [B, L], 'mask' bool [B, L],
  'empty_ids'/'empty_mask' [B, L] (the empty prompt); or, for a frozen text encoder whose
  outputs are cached, 'text' / 'empty_text' [B, L, D] in place of the ids (then only the
  model's DiT runs). cfg: the config's `diffusion` section
  (vdm/config/t2v.py documents each field; `vdm.config.section('diffusion', ...)` builds one).
  With probability cfg.text_dropout a clip's caption is replaced by the empty prompt, so the same
  model also learns the unconditional velocity that classifier-free guidance needs. Level
  schemes and masks: see the module docstring.
  temporal_patch: the DiT's (levels shared within its groups of frames; block-causal masks and
  teacher forcing are not offered for grouped frames).
  control: the config's `control` section, for a batch with control inputs ('control_tokens',
  'control_frames'; `drop_control` drops them at random with control.dropout).
  audio: the config's `audio` section of a joint model, whose batch also holds 'audio_latents'
  [B, Ta, Ca] (normalised); audio_per_frame and video_temporal_downsample place each audio
  latent frame in time (see the module docstring). Metrics then add 'audio_flow_loss'.
  A batch with 'switch_ids', 'switch_mask' and 'switch_frame' (control.prompt_switch_prob) gives
  each latent frame its own prompt (`switched_text`).
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
  joint = {}
  if audio is not None:
    a0 = batch["audio_latents"]
    frame_of_audio = audio_video_frames(a0.shape[1], audio_per_frame, video_temporal_downsample)
    r_audio = jax.random.fold_in(rng, 2)
    levels, weights, a_levels, a_weights = audio_levels_and_weights(
        jax.random.fold_in(r_audio, 0), levels, weights, frame_of_audio,
        given_video_prob=audio.given_video_prob, given_audio_prob=audio.given_audio_prob)
    a_noise = jax.random.normal(jax.random.fold_in(r_audio, 1), a0.shape, a0.dtype)
    joint = dict(audio=interpolate(a0, a_noise, a_levels), audio_levels=a_levels)
  x_t = interpolate(x0, noise, levels)
  inputs, caption_ids, caption_mask = {}, batch.get("ids"), batch["mask"]
  if control is not None:  # its own key: runs without control keep their random streams
    given = drop_control(jax.random.fold_in(rng, 3), batch, dropout=control.dropout,
                         objects=control.objects)
    inputs = {} if given is None else dict(control=given)
    camera = None if given is None else (
        given.frames[:, :1, -1] if given.frames is not None else
        given.camera_tokens[:, :1, 0, -1] if given.camera_tokens is not None else None)
    if "camera_free_ids" in batch and camera is not None:
      # control.camera_caption_dropout: a clip whose camera path survived the dropout may lose
      # the camera clause of its caption, so the move has to be read from the path.
      camera_given = camera > 0  # [B, 1], the path's given-flag
      swap = camera_given & jax.random.bernoulli(
          jax.random.fold_in(rng, 4), control.camera_caption_dropout, (b, 1))
      caption_ids = jnp.where(swap, batch["camera_free_ids"], caption_ids)
      caption_mask = jnp.where(swap, batch["camera_free_mask"], caption_mask)
  mask = jnp.where(drop, batch["empty_mask"], caption_mask)
  if "text" in batch:  # a frozen encoder's cached outputs (vdm.train.latent_cache.TextCache)
    text = jnp.where(drop[:, :, None], batch["empty_text"], batch["text"])
    velocity = model.dit(x_t, levels, text, mask, temporal_mask, offset, **inputs, **joint)
  elif "switch_ids" in batch:  # control.prompt_switch_prob: a prompt per latent frame
    text, mask = switched_text(
        model.text, jnp.where(drop, batch["empty_ids"], caption_ids), mask,
        jnp.where(drop, batch["empty_ids"], batch["switch_ids"]),
        jnp.where(drop, batch["empty_mask"], batch["switch_mask"]), batch["switch_frame"], t)
    velocity = model.dit(x_t, levels, text, mask, temporal_mask, offset, **inputs, **joint)
  else:
    ids = jnp.where(drop, batch["empty_ids"], caption_ids)
    velocity = model(x_t, levels, ids, mask, temporal_mask, offset, **inputs, **joint)
  if audio is not None:
    velocity, a_velocity = velocity
    audio_flow = flow_matching_loss(a_velocity, a0, a_noise, a_weights)
  flow = flow_matching_loss(velocity, x0, noise, weights)
  metrics = dict(flow_loss=flow, mean_level=levels.mean())
  loss = flow
  if audio is not None:
    loss = loss + audio.loss_weight * audio_flow
    metrics["audio_flow_loss"] = audio_flow
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
