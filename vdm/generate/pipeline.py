"""prompt -> video: tokenizer, text encoder, sampler over a noise-level matrix, VAE decoder.

    pipe = vdm.Pipeline.load("checkpoints/spine")
    frames = pipe("a red circle moving right on a blue background", seed=0)  # uint8 [T, H, W, 3]
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.config import ASPECTS, spatial_stride
from vdm.diffusion import euler_sample, guided_velocity
from vdm.generate.modes import MODES, noise_levels


@dataclasses.dataclass(frozen=True)
class Request:
  """A fully resolved and validated generation request."""
  prompt: str
  negative_prompt: str
  seed: int
  frames: int
  fps: int
  height: int
  width: int
  steps: int
  guidance: float
  mode: str

  @property
  def seconds(self) -> float:
    return self.frames / self.fps


def frame_size(aspect: str, resolution: int, stride: int) -> tuple[int, int]:
  """(height, width) with the short side = resolution and the long side rounded to the stride."""
  if aspect not in ASPECTS:
    raise ValueError(f"--aspect {aspect!r} is not supported: allowed {sorted(ASPECTS)}")
  if not isinstance(resolution, int) or resolution <= 0 or resolution % stride:
    raise ValueError(f"--resolution {resolution!r} must be a positive multiple of {stride} "
                     f"(the model's VAE downsampling x patch size)")
  a, b = ASPECTS[aspect]
  long_side = max(stride, int(round(resolution * max(a, b) / min(a, b) / stride)) * stride)
  return (resolution, long_side) if a >= b else (long_side, resolution)


def clip_frames(seconds: float, fps: int, temporal_downsample: int, max_frames: int) -> int:
  """Number of frames for a duration: 1 + a multiple of the VAE's temporal stride, >= 1."""
  if not isinstance(fps, int) or fps <= 0:
    raise ValueError(f"--fps {fps!r} must be a positive integer")
  max_seconds = max_frames / fps
  if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds <= 0:
    raise ValueError(f"--seconds {seconds!r} must be > 0 and at most {max_seconds:.3g} "
                     f"({max_frames} frames at {fps} fps)")
  frames = 1 + temporal_downsample * max(0, round((seconds * fps - 1) / temporal_downsample))
  if frames > max_frames:
    raise ValueError(f"--seconds {seconds} is beyond this model's limit: at most "
                     f"{max_seconds:.3g} s ({max_frames} frames at {fps} fps)")
  return frames


class Pipeline:
  """The text-to-video model with its sampling defaults; call it with a prompt to get frames."""

  def __init__(self, config, tokenizer, vae, denoiser, latent_stats, directory: str = ""):
    self.config, self.tokenizer, self.vae, self.denoiser = config, tokenizer, vae, denoiser
    self.latent_mean = latent_stats["mean"]
    self.latent_std = latent_stats["std"]
    self.directory = directory
    self._sample_fns = {}

  @classmethod
  def load(cls, directory: str) -> "Pipeline":
    """Loads a model directory written by `vdm train` (see vdm.models)."""
    from vdm.models import load_model_dir
    return cls(*load_model_dir(directory), directory=directory)

  def resolve(self, prompt: str, *, negative_prompt: str = "", seed: int = 0,
              seconds: float | None = None, fps: int | None = None, aspect: str | None = None,
              resolution: int | None = None, steps: int | None = None,
              guidance: float | None = None, mode: str | None = None) -> Request:
    """Validates a request, filling unset options from the model's config.sample defaults."""
    s = self.config.sample
    if not isinstance(prompt, str) or not prompt.strip():
      raise ValueError("--prompt must be a non-empty string")
    if not isinstance(negative_prompt, str):
      raise ValueError("--negative-prompt must be a string")
    if not isinstance(seed, int) or seed < 0:
      raise ValueError(f"--seed {seed!r} must be an integer >= 0")
    steps = s.steps if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= 1000:
      raise ValueError(f"--steps {steps!r} must be an integer in [1, 1000]")
    guidance = s.guidance if guidance is None else guidance
    if not isinstance(guidance, (int, float)) or not 0 <= guidance <= 100:
      raise ValueError(f"--guidance {guidance!r} must be a number in [0, 100]")
    mode = s.mode if mode is None else mode
    if mode not in MODES:
      raise ValueError(f"--mode {mode!r} is not supported: allowed {list(MODES)}")
    fps = s.fps if fps is None else fps
    frames = clip_frames(s.seconds if seconds is None else seconds, fps,
                         self.vae.temporal_downsample, s.max_frames)
    height, width = frame_size(s.aspect if aspect is None else aspect,
                               s.resolution if resolution is None else resolution,
                               spatial_stride(self.config))
    max_length = self.config.text.max_length
    for name, text in (("--prompt", prompt), ("--negative-prompt", negative_prompt)):
      if self.tokenizer.num_pieces(text) > max_length - 1:
        warnings.warn(f"{name} is longer than the text encoder's {max_length - 1} tokens; "
                      "the rest is ignored")
    return Request(prompt=prompt, negative_prompt=negative_prompt, seed=seed, frames=frames,
                   fps=fps, height=height, width=width, steps=steps, guidance=float(guidance),
                   mode=mode)

  def __call__(self, prompt: str, **options) -> np.ndarray:
    """Generates a clip; returns uint8 frames [T, H, W, 3]. Options as in `resolve`."""
    return self.generate(self.resolve(prompt, **options))["frames"]

  def generate(self, request: Request) -> dict:
    """Runs a resolved request; returns frames uint8 [T, H, W, 3] and timings in seconds."""
    t0 = time.perf_counter()
    ids, mask = self.tokenizer.encode([request.prompt, request.negative_prompt],
                                      self.config.text.max_length)
    td, sd = self.vae.temporal_downsample, self.vae.spatial_downsample
    latent_shape = (1, 1 + (request.frames - 1) // td, request.height // sd, request.width // sd,
                    self.config.vae.latent_channels)
    levels = noise_levels(request.mode, steps=request.steps, frames=latent_shape[1],
                          shift=self.config.sample.shift)
    noise = jax.random.normal(jax.random.key(request.seed), latent_shape)
    video = self._sampler(latent_shape, request.steps)(
        nnx.state(self.denoiser), nnx.state(self.vae), noise, jnp.asarray(ids),
        jnp.asarray(mask), jnp.asarray(levels), jnp.float32(request.guidance))
    frames = np.asarray(jax.device_get(video))[0]
    return dict(frames=frames, seconds_total=time.perf_counter() - t0)

  def _sampler(self, latent_shape, steps):
    key = (latent_shape, steps)
    if key not in self._sample_fns:
      denoiser_def, vae_def = nnx.graphdef(self.denoiser), nnx.graphdef(self.vae)
      mean, std = self.latent_mean, self.latent_std

      @jax.jit
      def sample(denoiser_state, vae_state, noise, ids, mask, levels, guidance):
        denoiser = nnx.merge(denoiser_def, denoiser_state)
        vae = nnx.merge(vae_def, vae_state)
        # Row 0: the prompt; row 1: the negative prompt ("" = unconditional). Encoded once.
        text = denoiser.text(ids, mask)

        def velocity(x, t):
          both = denoiser.dit(jnp.concatenate([x, x]), jnp.concatenate([t, t]), text, mask)
          return guided_velocity(both[:1], both[1:], guidance)

        z = euler_sample(velocity, noise, levels)
        video = vae.decode(z * std + mean)
        return jnp.round((jnp.clip(video, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)

      self._sample_fns[key] = sample
    return self._sample_fns[key]
