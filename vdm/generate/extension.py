"""Extension (video prediction): continue given frames, the given frames' latents pinned at level 0.

The given frames are encoded by the causal VAE on their own (a latent frame never sees later
pixels, so these are the latents the whole clip would have), placed at the start of the latent
clip and held at level 0 in every row of the mode's noise-level matrix (`modes.pin_frames`); the
sampler never moves a frame whose level is constant, so they stay exact, and the new latent
frames are generated around them by the ordinary sampler. Many clips and several samples per
clip run as one batch.

    new = extend_clips(pipe, given, new_frames=10, samples=4, seed=0)  # uint8 [K, B, 10, H, W, 3]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.diffusion.samplers import SAMPLERS
from vdm.generate import pipeline
from vdm.generate.modes import MODES, generation_mode


def extension_modes() -> tuple[str, ...]:
  """The registered modes that may continue given frames (`Mode.extension`)."""
  return tuple(name for name, mode in MODES.items() if mode.extension)


def latent_split(given: int, new: int, temporal_downsample: int) -> tuple[int, int]:
  """(given latent frames, new latent frames) when `given` frames are continued by `new` ones.

  The given frames must be exactly whole latent frames (1 + k * temporal_downsample of them) and
  the new ones whole latent frames after them (a multiple of temporal_downsample); otherwise a
  latent frame would mix given and generated pixels.
  """
  td = temporal_downsample
  if not isinstance(given, (int, np.integer)) or given < 1 or (given - 1) % td:
    raise ValueError(f"given frames must be 1 + a multiple of the VAE's temporal stride {td}, "
                     f"got {given!r}")
  if not isinstance(new, (int, np.integer)) or new < td or new % td:
    raise ValueError(f"new frames must be a positive multiple of the VAE's temporal stride {td}, "
                     f"got {new!r}")
  return 1 + (given - 1) // td, new // td


def extension_levels(mode: str, *, steps: int, given: int, new: int, shift: float,
                     chunk: int = 1,
                     spacing: str | tuple = "linear") -> tuple[np.ndarray, np.ndarray]:
  """(levels [R, given + new] float32 with the first `given` columns 0, mask [T, T] bool) for
  latent frame counts `given` and `new`: the mode's matrix over the whole clip, given frames
  pinned (DESIGN: 'image-to-video, extension'); `spacing` as in `time_grid` (a few-step
  model's `sample.timesteps`)."""
  if mode not in extension_modes():
    raise ValueError(f"mode {mode!r} is not an extension mode: allowed {list(extension_modes())}")
  return generation_mode(mode, steps=steps, frames=given + new, chunk=chunk, shift=shift,
                         pinned=tuple(range(given)), spacing=spacing)


def encode_given(pipe, given) -> jax.Array:
  """Normalised latents [B, n, h, w, C] of the given frames uint8 [B, G, H, W, 3], encoded alone."""
  given = np.asarray(given)
  if given.ndim != 5 or given.shape[-1] != 3 or given.dtype != np.uint8:
    raise ValueError(f"given must be uint8 [B, G, H, W, 3], got {given.dtype} {given.shape}")
  vae_def, vae_state = nnx.split(pipe.vae)
  return pipeline.encode_video(vae_def, vae_state, jnp.asarray(given), pipe.latent_mean,
                               pipe.latent_std)


def extend_latents(pipe, context, new_latent_frames: int, *, samples: int = 1, seed: int = 0,
                   steps: int | None = None, sampler: str | None = None,
                   mode: str = "parallel", chunk: int = 1, prompt: str = "",
                   negative_prompt: str = "", guidance: float = 1.0,
                   first_index: int = 0) -> jax.Array:
  """Samples latent clips [K, B, n + new, h, w, C] whose first n frames are `context` [B, n, h,
  w, C] (normalised latents, pinned at level 0 and returned bit for bit).

  samples: K per clip; sample k of clip b starts from noise keyed by (seed, k, first_index + b),
    so a clip's samples do not depend on how the clips are batched.
  steps, sampler: default to the model's config.sample. mode: 'parallel' (bidirectional mask) or
    a chunked mode's matrix ('autoregressive', 'rolling': block-causal, `chunk` latent frames).
  prompt, negative_prompt, guidance: text conditioning; the default (empty prompt, guidance 1) is
    one network call per step.
  """
  if not isinstance(samples, int) or samples < 1:
    raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
  s = pipe.config.sample
  steps = s.steps if steps is None else steps
  sampler = s.sampler if sampler is None else sampler
  if sampler not in SAMPLERS:
    raise ValueError(f"sampler {sampler!r}: allowed {list(SAMPLERS)}")
  b, n = context.shape[:2]
  levels, temporal_mask = extension_levels(mode, steps=steps, given=n, new=new_latent_frames,
                                           shift=s.shift, chunk=chunk,
                                           spacing=tuple(s.timesteps) or "linear")
  key = jax.random.key(seed)
  noise = jnp.stack([jnp.stack([
      jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, k), first_index + i),
                        (n + new_latent_frames,) + tuple(context.shape[2:])) for i in range(b)])
      for k in range(samples)])  # [K, B, T, h, w, C]
  x_init = noise.at[:, :, :n].set(jnp.broadcast_to(context, (samples,) + tuple(context.shape)))
  ids, text_mask = pipe.tokenizer.encode([prompt, negative_prompt], pipe.config.text.max_length)
  den_def, den_state = nnx.split(pipe.denoiser)
  text_mask = jnp.asarray(text_mask)
  text = pipeline.encode_text(den_def, den_state, jnp.asarray(ids), text_mask)
  z = pipeline.sample_matrix(den_def, den_state, x_init.reshape((-1,) + x_init.shape[2:]), text,
                             text_mask, jnp.asarray(levels), jnp.asarray(temporal_mask),
                             jnp.float32(guidance), jax.random.fold_in(key, 1 << 20),
                             sampler_name=sampler, guided=float(guidance) != 1.0)
  return z.reshape(x_init.shape)


def extend_clips(pipe, given, new_frames: int, **options) -> np.ndarray:
  """Continues each clip of `given` by `new_frames` generated frames.

  Args:
    pipe: a loaded `vdm.Pipeline` (VAE, denoiser, tokenizer, latent statistics, config).
    given: uint8 [B, G, H, W, 3], G = 1 + a multiple of the VAE's temporal stride.
    new_frames: a multiple of the temporal stride.
    options: as `extend_latents` (samples K, seed, steps, sampler, mode, ...).
  Returns:
    uint8 [K, B, new_frames, H, W, 3]: only the generated frames (the caller has the given ones).
  """
  given = np.asarray(given)
  n_given, n_new = latent_split(given.shape[1] if given.ndim == 5 else 0, new_frames,
                                pipe.vae.temporal_downsample)
  z = extend_latents(pipe, encode_given(pipe, given), n_new, **options)
  vae_def, vae_state = nnx.split(pipe.vae)
  # [K * B, T, H, W, 3]; the causal decoder sees the context.
  video = pipeline.decode_latents(vae_def, vae_state, z.reshape((-1,) + z.shape[2:]),
                                  pipe.latent_mean, pipe.latent_std)
  first_new = pipe.vae.pixel_frames(n_given)
  return np.asarray(video[:, first_new:]).reshape(z.shape[:2] + (new_frames,) + given.shape[2:])
