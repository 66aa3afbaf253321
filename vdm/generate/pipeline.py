"""prompt -> video: tokenizer, text encoder, sampler over a noise-level matrix, VAE decoder.

    pipe = vdm.Pipeline.load("checkpoints/spine")
    frames = pipe("a red circle moving right on a blue background", seed=0)  # uint8 [T, H, W, 3]
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vdm.config import ASPECTS, spatial_stride
from vdm.diffusion.guidance import guide
from vdm.diffusion.samplers import SAMPLERS, sample
from vdm.generate.kv_cache import empty_cache
from vdm.generate.modes import (MODES, allowed_chunks, generation_mode, pipeline_modes,
                                schedule_grid)
from vdm.generate.streaming import generate_autoregressive, prefill
from vdm.nn import denormalize_pixels, normalize_pixels
from vdm.vae.chunked import StreamingDecoder


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
  sampler: str = "euler"
  chunk: int = 1
  context_noise: float = 0.0
  image: str | None = None
  kv_cache: bool = True
  window: int = 0         # latent frames of context per autoregressive chunk (resolved, >= 1)
  extend: str | None = None  # a video to continue; `frames` then counts the new frames only

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
  h, w = ASPECTS[aspect]  # (height, width) ratio
  long_side = max(stride, int(round(resolution * max(h, w) / min(h, w) / stride)) * stride)
  return (resolution, long_side) if w >= h else (long_side, resolution)


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

  @classmethod
  def load(cls, directory: str, *, scan_layers: bool | None = None) -> "Pipeline":
    """Loads a model directory written by `vdm train` (see vdm.models); scan_layers=True/False
    runs its DiT in the other layer layout than it was trained with (same weights)."""
    from vdm.models import load_model_dir
    return cls(*load_model_dir(directory, scan_layers=scan_layers), directory=directory)

  def resolve(self, prompt: str, *, negative_prompt: str = "", seed: int = 0,
              seconds: float | None = None, fps: int | None = None, aspect: str | None = None,
              resolution: int | None = None, steps: int | None = None,
              guidance: float | None = None, mode: str | None = None,
              sampler: str | None = None, chunk: int | None = None,
              context_noise: float | None = None, image: str | None = None,
              kv_cache: bool = True, extend: str | None = None) -> Request:
    """Validates a request, filling unset options from the model's config.sample defaults.

    extend: a video file to continue autoregressively (`mode` defaults to autoregressive; `seconds`
    is the length of the continuation); the output is the video followed by the new frames.
    """
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
    if len(s.schedule):  # a few-step student: the levels it was trained on, nothing else
      schedule_grid(s.schedule, steps)
    guidance = s.guidance if guidance is None else guidance
    if not isinstance(guidance, (int, float)) or not 0 <= guidance <= 100:
      raise ValueError(f"--guidance {guidance!r} must be a number in [0, 100]")
    streaming_modes = tuple(m for m in pipeline_modes() if MODES[m].streams)
    if extend is not None:
      mode = streaming_modes[0] if mode is None else mode
      if mode not in streaming_modes or image is not None:
        raise ValueError(f"--extend continues a clip chunk by chunk with the KV cache: it needs "
                         f"--mode in {list(streaming_modes)} (got {mode!r}) and no --image")
      from vdm.video_io import probe_video
      if not os.path.isfile(extend):
        raise ValueError(f"--extend {extend!r}: no such video file")
      try:  # fail now (missing or corrupt file), not after the model has loaded or run
        probe_video(extend)
      except ValueError as e:
        raise ValueError(f"--extend: {e}") from None
    mode = s.mode if mode is None else mode
    if mode not in pipeline_modes():
      raise ValueError(f"--mode {mode!r} is not supported: allowed {list(pipeline_modes())}")
    spec = MODES[mode]
    temporal_patch = self.config.dit.temporal_patch
    if temporal_patch > 1 and not spec.temporal_patch:
      grouped = [m for m in pipeline_modes() if MODES[m].temporal_patch]
      raise ValueError(f"--mode {mode} needs a model with dit.temporal_patch=1 (this one groups "
                       f"{temporal_patch} latent frames per token): allowed {grouped}")
    sampler = s.sampler if sampler is None else sampler
    if sampler not in SAMPLERS:
      raise ValueError(f"--sampler {sampler!r} is not supported: allowed {list(SAMPLERS)}")
    context_noise = s.context_noise if context_noise is None else context_noise
    if not isinstance(context_noise, (int, float)) or not 0 <= context_noise < 1:
      raise ValueError(f"--context-noise {context_noise!r} must be a number in [0, 1)")
    if spec.needs_image and image is None:
      raise ValueError(f"--mode {mode} needs --image PNG (the first frame)")
    if image is not None:
      load_image(image)  # fail now, not after the model has run
    fps = s.fps if fps is None else fps
    streaming = spec.streams and kv_cache and image is None
    td = self.vae.temporal_downsample
    frames = clip_frames(s.seconds if seconds is None else seconds, fps, td,
                         s.max_stream_frames if streaming else s.max_frames)
    if extend is not None:  # the continuation: whole latent frames of `td` frames each
      frames = max(td, frames - 1)
      latent_frames = frames // td
    else:
      latent_frames = self.vae.latent_frames(frames)
    chunk = s.chunk if chunk is None else chunk
    allowed = allowed_chunks(latent_frames)
    if not isinstance(chunk, int) or chunk not in allowed:
      raise ValueError(f"--chunk {chunk!r} must divide the {latent_frames} latent frames of a "
                       f"{frames}-frame clip, or that number minus 1 (the first latent frame "
                       f"alone): allowed {allowed}")
    train_latents = self.vae.latent_frames(self.config.data.frames)
    window = s.window or max(1, train_latents - chunk)
    if self.config.dit.temporal_window:  # a local-attention model sees no further back
      window = min(window, self.config.dit.temporal_window)
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
                   mode=mode, sampler=sampler, chunk=chunk, context_noise=float(context_noise),
                   image=image, kv_cache=bool(kv_cache), window=int(window), extend=extend)

  def __call__(self, prompt: str, **options) -> np.ndarray:
    """Generates a clip; returns uint8 frames [T, H, W, 3]. Options as in `resolve`."""
    return self.generate(self.resolve(prompt, **options))["frames"]

  def generate(self, request: Request, on_frames=None) -> dict:
    """Runs a resolved request; returns frames uint8 [T, H, W, 3] and timings in seconds.

    on_frames(frames uint8 [t, H, W, 3]) is called with consecutive pieces of the clip as they are
    ready: per chunk in autoregressive mode with the KV cache (a long clip streams to a file in
    bounded memory), once with the whole clip otherwise.
    """
    t0 = time.perf_counter()
    ids, mask = self.tokenizer.encode([request.prompt, request.negative_prompt],
                                      self.config.text.max_length)
    sd, td = self.vae.spatial_downsample, self.vae.temporal_downsample
    latent_frames = (request.frames // td if request.extend is not None
                     else self.vae.latent_frames(request.frames))
    latent_shape = (1, latent_frames, request.height // sd, request.width // sd,
                    self.config.vae.latent_channels)
    noise_key, sampler_key = jax.random.split(jax.random.key(request.seed))
    x_init = jax.random.normal(noise_key, latent_shape)
    if request.image is not None:
      x_init = x_init.at[:, 0].set(self._encode_first_frame(request))
    denoiser_def, denoiser_state = nnx.split(self.denoiser)
    mask = jnp.asarray(mask)
    # Row 0: the prompt; row 1: the negative prompt ("" = unconditional). Encoded once.
    text = encode_text(denoiser_def, denoiser_state, jnp.asarray(ids), mask)
    guidance = jnp.float32(request.guidance)
    # One DiT row per clip instead of two (prompt, negative prompt): a guidance-distilled DiT
    # takes the scale as an input; a model with guidance distilled into its weights
    # (sample.distilled_guidance) needs none on top at --guidance 1.
    guided = not (self.config.sample.distilled_guidance > 0 and request.guidance == 1.0)
    rows = 1 if self.denoiser.dit.guidance_input or not guided else 2
    chunk_velocity = _guided_chunk_velocity if guided else _conditional_chunk_velocity
    vae_def, vae_state = nnx.split(self.vae)
    decode = functools.partial(decode_latents, vae_def, vae_state, mean=self.latent_mean,
                               std=self.latent_std)
    pieces = []

    def emit(video):
      frames = np.asarray(jax.device_get(video))[0]
      pieces.append(frames)
      if on_frames is not None:
        on_frames(frames)

    spec = MODES[request.mode]
    if spec.streams and request.image is None and request.kv_cache:
      # Chunk by chunk with a KV cache (a ring buffer of `window` frames): equal to the matrix
      # below with a sliding-window mask, without recomputing the past; frames stream out.
      cache = empty_cache(depth=self.config.dit.depth, batch_tokens=rows * (
          latent_shape[2] // self.config.dit.patch) * (latent_shape[3] // self.config.dit.patch),
          slots=request.window, heads=self.config.dit.heads,
          head_dim=self.config.dit.width // self.config.dit.heads)
      params = (denoiser_def, denoiser_state, text, mask, guidance)
      context = None
      if request.extend is not None:
        given, context = self._encode_tail(request)
        emit(given[None])
        cache = prefill(chunk_velocity, params, context, cache, chunk=request.chunk,
                        context_level=request.context_noise,
                        rng=jax.random.fold_in(sampler_key, 1 << 20))
      stream = StreamingDecoder(functools.partial(
          _decode_step, vae_def, vae_state, mean=self.latent_mean, std=self.latent_std),
          context=context)
      generate_autoregressive(
          chunk_velocity, params, x_init, cache, chunk=request.chunk,
          steps=request.steps, context_level=request.context_noise,
          shift=self.config.sample.shift, sampler=request.sampler, rng=sampler_key,
          first_frame=0 if context is None else context.shape[1],
          schedule=tuple(self.config.sample.schedule),
          on_chunk=lambda offset, x: emit(stream.push(x)))
    else:
      # A causal mode's mask is limited to the window the KV-cache path sees, so both paths of
      # one request give the same frames.
      levels, temporal_mask = generation_mode(
          request.mode, steps=request.steps, frames=latent_shape[1], chunk=request.chunk,
          context_level=request.context_noise, shift=self.config.sample.shift,
          pinned=(0,) if request.image is not None else (),
          window=request.window if spec.causal else None, schedule=self.config.sample.schedule)
      z = sample_matrix(denoiser_def, denoiser_state, x_init, text, mask, jnp.asarray(levels),
                        jnp.asarray(temporal_mask), guidance, sampler_key,
                        sampler_name=request.sampler, guided=guided)
      emit(decode(z))
    return dict(frames=np.concatenate(pieces), seconds_total=time.perf_counter() - t0)

  def _encode_tail(self, request: Request):
    """The video to extend, resized: (all its frames uint8 [T, H, W, 3], normalised latents of its
    last frames [1, n, h, w, C] with n <= window, encoded as a clip of their own)."""
    from vdm.video_io import read_video
    try:
      video = read_video(request.extend)
    except Exception as e:  # noqa: BLE001 - a file damaged past its first frame
      raise ValueError(f"--extend {request.extend!r} is not a readable video ({e})") from None
    if video.shape[1:3] != (request.height, request.width):
      warnings.warn(f"--extend video is {video.shape[2]}x{video.shape[1]}; resized to "
                    f"{request.width}x{request.height}")
      video = np.asarray(jnp.round(jnp.clip(jax.image.resize(
          video.astype(np.float32), (len(video), request.height, request.width, 3), "bicubic"),
          0, 255)).astype(jnp.uint8))
    td = self.vae.temporal_downsample
    n = min(request.window, 1 + (len(video) - 1) // td)
    tail = video[len(video) - (1 + (n - 1) * td):]
    pixels = normalize_pixels(tail)[None]
    latents = self.vae.encode(pixels)[0]
    return video, (latents - self.latent_mean) / self.latent_std

  def _encode_first_frame(self, request: Request) -> jax.Array:
    """The normalised latent [1, h, w, C] of the given image (the causal VAE encodes it alone)."""
    image = load_image(request.image)
    if image.shape[:2] != (request.height, request.width):
      warnings.warn(f"--image is {image.shape[1]}x{image.shape[0]}; resized to "
                    f"{request.width}x{request.height}")
      image = jax.image.resize(image.astype(np.float32), (request.height, request.width, 3),
                               "bicubic")
    pixels = normalize_pixels(jnp.clip(jnp.asarray(image, jnp.float32), 0, 255))
    latent = self.vae.encode(pixels[None, None])[0][:, 0]
    return (latent - self.latent_mean) / self.latent_std


# The jitted pieces take the graph definition as a static argument and the weights as arrays, so
# one compilation per shape serves every call and the weights are never baked into the program.

@functools.partial(jax.jit, static_argnames=("graphdef",))
def encode_text(graphdef, state, ids, mask):
  """Text encoder of the denoiser `graphdef`/`state`: ids int32 [B, L], mask bool [B, L] ->
  [B, L, D]."""
  return nnx.merge(graphdef, state).text(ids, mask)


@functools.partial(jax.jit, static_argnames=("graphdef", "sampler_name", "guided"))
def sample_matrix(graphdef, state, x_init, text, mask, levels, temporal_mask, guidance, rng, *,
                  sampler_name, guided=True):
  """The sampler over x_init [B, T, h, w, C] for one noise-level matrix; text [2, L, D] and mask
  [2, L] are the prompt's and the negative prompt's rows, shared by the batch. guided=False
  (guidance 1): the prompt's velocity alone, one DiT call a step."""
  dit = nnx.merge(graphdef, state).dit
  b = x_init.shape[0]
  text, mask = (jnp.repeat(a, b, axis=0) for a in (text, mask))  # [2B]: prompt rows, then negative

  def velocity(x, t, step=None):  # step: the shortcut sampler's step size [B, T]
    return guided_velocity(dit, x, t, text, mask, guidance, guided=guided, step=step,
                           temporal_mask=temporal_mask)

  return sample(sampler_name, velocity, x_init, levels, rng=rng)


def guided_velocity(dit, x, t, text, mask, guidance, *, guided=True, step=None,
                    temporal_mask=None, cache=None, frame_offset=0):
  """The velocity [B, T, ...] the sampler follows: classifier-free guided by `guidance` (two DiT
  rows per clip: text [2B, L, D] holds the prompt rows, then the negative prompt's), or, for a
  guidance-distilled DiT (dit.guidance_input), one row given the scale as an input. step: the
  step size for a DiT with dit.step_input (ignored by one without). With `cache` the KV-cached
  chunk forward: returns (velocity, (keys, values)) of the prompt rows then."""
  b = x.shape[0]
  conditions = dict(step=step) if dit.step_input else {}

  def call(x, t, text, mask, **extra):
    if cache is None:
      return dit(x, t, text, mask, temporal_mask, **conditions, **extra), None
    return dit.forward_cached(x, t, text, mask, cache, frame_offset, **conditions, **extra)

  if dit.guidance_input:  # one forward: the student was taught the guided velocity
    v, kv = call(x, t, text[:b], mask[:b], guidance=jnp.broadcast_to(guidance, (b,)))
  elif not guided:
    v, kv = call(x, t, text[:b], mask[:b])
  else:  # the prompt and the negative prompt as one batch of 2B rows
    if "step" in conditions and step is not None:
      conditions = dict(step=jnp.concatenate([step, step]))
    both, kv = call(jnp.concatenate([x, x]), jnp.concatenate([t, t]), text, mask)
    v = guide(both[:b], both[b:], scale=guidance)
  return v if cache is None else (v, kv)


def _guided_chunk_velocity(params, x, t, cache, frame_offset, step=None):
  """`vdm.generate.streaming` chunk function: the guided DiT on one chunk with the KV cache
  (`guided_velocity`; the cache holds both rows, or one for a guidance-distilled DiT)."""
  graphdef, state, text, mask, guidance = params
  dit = nnx.merge(graphdef, state).dit
  return guided_velocity(dit, x, t, text, mask, guidance, step=step, cache=cache,
                         frame_offset=frame_offset)


def _conditional_chunk_velocity(params, x, t, cache, frame_offset, step=None):
  """The chunk function without guidance: the prompt's row alone (the cache holds one row)."""
  graphdef, state, text, mask, guidance = params
  dit = nnx.merge(graphdef, state).dit
  return guided_velocity(dit, x, t, text, mask, guidance, guided=False, step=step, cache=cache,
                         frame_offset=frame_offset)


@functools.partial(jax.jit, static_argnums=0)
def encode_video(graphdef, state, video, mean, std):
  """Pixels [B, T, H, W, 3] in [0, 255] (uint8 or float) -> normalised latent means [B, T', h,
  w, C]: the inverse of `decode_latents`."""
  pixels = normalize_pixels(video)
  return (nnx.merge(graphdef, state).encode(pixels)[0] - mean) / std


@functools.partial(jax.jit, static_argnums=0)
def decode_latents(graphdef, state, z, mean, std):
  """Normalised latents [B, T', h, w, C] -> uint8 frames [B, T, H, W, 3] through the VAE
  `graphdef`/`state` (mean, std: the latent statistics [C] the latents were normalised by)."""
  return denormalize_pixels(nnx.merge(graphdef, state).decode(z * std + mean))


@functools.partial(jax.jit, static_argnums=0)
def _decode_step(graphdef, state, z, cache, mean, std):
  """One streamed chunk: (normalised latents, decoder cache) -> (uint8 frames, new cache)."""
  video, cache = nnx.merge(graphdef, state).decode_step(z * std + mean, cache)
  return denormalize_pixels(video), cache


def load_image(path: str) -> np.ndarray:
  """Reads an image file to uint8 RGB [H, W, 3] (alpha dropped, grey expanded)."""
  import mediapy
  if not isinstance(path, str) or not os.path.isfile(path):
    raise ValueError(f"--image {path!r}: no such file")
  from PIL import UnidentifiedImageError
  try:
    image = np.asarray(mediapy.read_image(path))
  except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
    raise ValueError(f"--image {path!r} is not a readable image: not an image format PIL "
                     "reads (PNG, JPEG, ...)") from None
  except Exception as e:  # any decoder failure is a bad input file, reported as such
    raise ValueError(f"--image {path!r} is not a readable image: {e}") from None
  if image.ndim == 2:
    image = np.stack([image] * 3, axis=-1)
  if image.dtype != np.uint8:
    image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
  return image[..., :3]
