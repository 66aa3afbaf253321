"""prompt -> video: tokenizer, text encoder, sampler over a noise-level matrix, VAE decoder.

    pipe = vdm.Pipeline.load("checkpoints/spine")
    frames = pipe("a red circle moving right on a blue background", seed=0)  # uint8 [T, H, W, 3]

A joint audio-video model (config.audio.enabled) also makes the soundtrack:

    frames, waveform = pipe(prompt, audio=True)       # waveform float32 [T * sample_rate / fps]
    frames, waveform = pipe(prompt, audio_from="x.wav")   # video for a given audio
    frames, waveform = pipe(prompt, video_from="x.mp4")   # audio for a given video

On a mesh (`Pipeline.load(DIR, parallel=dict(data=4, sequence=2))`) the denoiser's weights are
laid out by the same rules as in training and sampling runs with the activation constraints on:
`generate_batch` splits its prompts over data (and fsdp), a long clip's frames (factorized
attention) or tokens (full) are split over `sequence`; the frames equal one device's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import threading
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
from vdm.control.timeline import load_timeline, schedule
from vdm.generate.modes import (MODES, allowed_chunks, chunk_bounds, generation_mode,
                                pipeline_modes, shot_mask)
from vdm.generate.streaming import generate_autoregressive, generate_rolling, prefill, streams
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
  # Control (vdm.control; docs/control.md), validated against the clip: object paths [K][T][2]
  # (pixels), the camera path [T][3] (s, tx, ty), a prompt timeline (Timeline.to_json(): the
  # prompt is then its first segment's) and the default switch policy.
  trajectory: tuple | None = None
  camera: tuple | None = None
  timeline: dict | None = None
  switch: str = "keep"
  audio: bool = False     # a joint model's soundtrack too (implied by audio_from / video_from)
  audio_from: str | None = None  # a sound file given: the video is generated for it
  video_from: str | None = None  # a video file given: its soundtrack is generated
  audio_guidance: float = 1.0

  @property
  def seconds(self) -> float:
    return self.frames / self.fps


class Cancelled(Exception):
  """Raised by an `on_step` or `on_frames` callback of `Pipeline.generate` to stop a generation
  (`vdm ui`'s cancel); generate re-raises it."""


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a generation is, given to `on_step`: sampler step `step` of `steps` (1-based) of chunk
  `chunk` of `chunks`. The chunked streaming path runs `steps` per chunk; every other path runs
  the whole noise-level matrix (one row a step) as chunk 1 of 1."""
  step: int
  steps: int
  chunk: int
  chunks: int


class _StepListener:
  """The on_step of the generate call in progress, fed by `_report_step` from inside the jitted
  sampler; keeps what it raised so generate can re-raise it in place of XLA's wrapper."""

  def __init__(self, on_step):
    self.on_step, self.error = on_step, None
    self.step_count, self.chunk, self.chunks = 0, 1, 1  # sized by the path generate takes

  def size(self, steps: int, chunks: int) -> None:
    self.step_count, self.chunk, self.chunks = steps, 1, chunks

  def __call__(self, step) -> None:
    try:
      self.on_step(Progress(int(step) + 1, self.step_count, self.chunk, self.chunks))
    except BaseException as e:  # noqa: BLE001 - whatever it is, generate raises it again
      self.error = e
      raise


# One module-level function is what the jitted samplers call, so that a new on_step per request
# neither recompiles nor enters a cache key; it forwards to the listener of the call in progress.
# The lock makes generate calls that report steps take turns (one device runs them anyway).
_listener: _StepListener | None = None
_listener_lock = threading.Lock()


def _report_step(step) -> None:
  if _listener is not None:
    _listener(step)


class _QuietCancel(logging.Filter):
  """jax logs every exception a callback raises with its traceback; a cancel is no failure."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], Cancelled))


logging.getLogger("jax._src.debugging").addFilter(_QuietCancel())


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

  def __init__(self, config, tokenizer, vae, denoiser, latent_stats, directory: str = "",
               audio_vae=None, placement=None):
    self.config, self.tokenizer, self.vae, self.denoiser = config, tokenizer, vae, denoiser
    self.latent_mean = latent_stats["mean"]
    self.latent_std = latent_stats["std"]
    self.directory = directory
    self.audio_vae = audio_vae  # a joint model's (config.audio.enabled), else None
    if audio_vae is not None:
      self.audio_mean, self.audio_std = latent_stats["audio_mean"], latent_stats["audio_std"]
    self.placement = placement  # vdm.parallel.placement.Placement, or None: one device

  @classmethod
  def load(cls, directory: str, *, scan_layers: bool | None = None,
           parallel: dict | None = None) -> "Pipeline":
    """Loads a model directory written by `vdm train` (see vdm.models); scan_layers=True/False
    runs its DiT in the other layer layout than it was trained with (same weights). parallel:
    a mesh as in the config's `parallel` section (e.g. dict(data=4, sequence=2)) to sample on;
    None: one device."""
    from vdm.convert.wan import detect_layout, load_wan
    if detect_layout(directory) is not None:  # a downloaded Wan2.1 directory, either layout
      if parallel:
        raise ValueError(f"--parallel: {directory!r} is a Wan2.1 directory; convert it first "
                         "(vdm convert DIR --out MODEL_DIR) and sample MODEL_DIR on the mesh")
      return cls(*load_wan(directory), directory=directory)
    from vdm.models import load_audio_vae, load_model_dir
    config, tokenizer, vae, denoiser, stats = load_model_dir(directory, scan_layers=scan_layers)
    audio_vae = load_audio_vae(directory, config)
    placement = None
    if parallel:
      from vdm.parallel.placement import Placement
      from vdm.parallel.sharding import shard_model
      if audio_vae is not None:
        raise ValueError("--parallel: a joint audio-video model samples on one device")
      fields = dict(config.parallel.to_dict(), **parallel)
      placement = Placement.from_config(fields, config.dit.attention)
      denoiser = shard_model(denoiser, placement.mesh, placement.rules)
      vae = nnx.merge(*_replicated(nnx.split(vae), placement))
    return cls(config, tokenizer, vae, denoiser, stats, directory=directory,
               audio_vae=audio_vae, placement=placement)

  def _activate(self):
    """The mesh context sampling runs in (nothing on one device)."""
    return contextlib.nullcontext() if self.placement is None else self.placement.activate()

  @property
  def sample_rate(self) -> int:
    """Audio samples per second of a joint model's soundtrack (0 without audio)."""
    return self.config.data.sample_rate if self.audio_vae is not None else 0

  def resolve(self, prompt: str, *, negative_prompt: str | None = None, seed: int = 0,
              seconds: float | None = None, fps: int | None = None, aspect: str | None = None,
              resolution: int | None = None, steps: int | None = None,
              guidance: float | None = None, mode: str | None = None,
              sampler: str | None = None, chunk: int | None = None,
              context_noise: float | None = None, image: str | None = None,
              kv_cache: bool = True, extend: str | None = None, trajectory=None, camera=None,
              prompts=None, switch: str | None = None, audio: bool = False,
              audio_from: str | None = None, video_from: str | None = None,
              audio_guidance: float | None = None) -> Request:
    """Validates a request, filling unset options from the model's config.sample defaults.

    extend: a video file to continue autoregressively (`mode` defaults to autoregressive; `seconds`
    is the length of the continuation); the output is the video followed by the new frames.
    trajectory: object paths (a JSON file, a dict in its schema, or an array [K, T, 2] of
    pixels; vdm.control.trajectory); camera: moves like "pan(2,0)", a JSON file, a dict or an
    array [T, 3] (vdm.control.camera): both need a model trained with them (control.*).
    prompts: a prompt timeline instead of `prompt` ("0s: ...; 2s: ...", a JSON file or dict;
    vdm.control.timeline) for a chunked mode; switch: its default switch policy (keep, recache,
    cut; default config.sample.switch).
    audio (a joint model): also generate the soundtrack; audio_from: a sound file to generate the
    video for; video_from: a video file to generate the soundtrack for (both imply audio);
    audio_guidance: the audio stream's guidance scale (default sample.audio_guidance).
    """
    s = self.config.sample
    timeline = None
    if prompts is not None:
      if prompt:
        raise ValueError("give --prompt or --prompts (a timeline), not both")
      timeline = load_timeline(prompts)
      prompt = timeline.prompts[timeline.segments[0].prompt]
    elif switch is not None:
      raise ValueError("--switch applies to prompt timelines: give --prompts")
    audio = bool(audio) or audio_from is not None or video_from is not None
    if audio:
      self._check_audio_request(audio_from, video_from, image, extend)
      if trajectory is not None or camera is not None or prompts is not None:
        raise ValueError("--trajectory, --camera and --prompts do not combine with sound "
                         "(--audio, --audio-from, --video-from)")
      kv_cache = False  # the joint model samples the whole matrix (no KV-cached audio stream)
    audio_guidance = s.audio_guidance if audio_guidance is None else audio_guidance
    if not isinstance(audio_guidance, (int, float)) or not 0 <= audio_guidance <= 100:
      raise ValueError(f"--audio-guidance {audio_guidance!r} must be a number in [0, 100]")
    if not isinstance(prompt, str) or not prompt.strip():
      raise ValueError("--prompt must be a non-empty string")
    if negative_prompt is None:  # the model's own (Wan's configs carry Wan's)
      negative_prompt = self.config.sample.negative_prompt
    if not isinstance(negative_prompt, str):
      raise ValueError("--negative-prompt must be a string")
    if not isinstance(seed, int) or seed < 0:
      raise ValueError(f"--seed {seed!r} must be an integer >= 0")
    steps = s.steps if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= 1000:
      raise ValueError(f"--steps {steps!r} must be an integer in [1, 1000]")
    if s.timesteps and steps > len(s.timesteps):  # a few-step model: (some of) its own levels
      raise ValueError(f"--steps {steps} does not fit this model: it samples at the "
                       f"{len(s.timesteps)} levels of its sample.timesteps "
                       f"{tuple(s.timesteps)}; allowed: 1..{len(s.timesteps)}")
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
    if audio and fps != self.config.data.fps:
      raise ValueError(f"--fps {fps}: a joint audio-video model samples at its training "
                       f"frame rate, {self.config.data.fps} (audio frames per video frame are "
                       "fixed)")
    if audio and spec.needs_image:
      raise ValueError(f"--mode {mode} needs an image; with sound the modes are "
                       f"{[m for m in pipeline_modes() if not MODES[m].needs_image]}")
    streaming = self._streams(mode, sampler=sampler, kv_cache=kv_cache, image=image,
                              timeline=timeline is not None)
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
    texts = [("--prompt", prompt), ("--negative-prompt", negative_prompt)]
    if timeline is not None:
      texts[:1] = [(f"--prompts prompt {i}", p) for i, p in enumerate(timeline.prompts)]
    for name, text in texts:
      if self.tokenizer.num_pieces(text) > max_length - 1:
        warnings.warn(f"{name} is longer than the text encoder's {max_length - 1} tokens; "
                      "the rest is ignored")
    control = self._resolve_control(trajectory, camera, frames=frames, height=height,
                                    width=width, extend=extend)
    switch = s.switch if switch is None else switch
    if timeline is not None:
      self._check_timeline(timeline, switch, mode=mode, image=image, extend=extend,
                           streaming=streaming, sampler=sampler, frames=frames, fps=fps,
                           chunk=chunk, latent_frames=latent_frames)
    if video_from is not None:
      self._check_given_video(video_from, frames)
    return Request(prompt=prompt, negative_prompt=negative_prompt, seed=seed, frames=frames,
                   fps=fps, height=height, width=width, steps=steps, guidance=float(guidance),
                   mode=mode, sampler=sampler, chunk=chunk, context_noise=float(context_noise),
                   image=image, kv_cache=bool(kv_cache), window=int(window), extend=extend,
                   timeline=None if timeline is None else timeline.to_json(), switch=switch,
                   audio=audio, audio_from=audio_from, video_from=video_from,
                   audio_guidance=float(audio_guidance), **control)

  def _resolve_control(self, trajectory, camera, *, frames, height, width, extend) -> dict:
    """Validated trajectory and camera paths as nested tuples (Request fields)."""
    out = dict(trajectory=None, camera=None)
    c = self.config.control
    for flag, value, trained in (("--trajectory", trajectory, c.trajectory),
                                 ("--camera", camera, c.camera)):
      if value is None:
        continue
      if not trained:
        raise ValueError(f"{flag}: this model has no {flag[2:]} input (it was trained with "
                         f"control.{flag[2:]}=False; docs/control.md)")
      if extend is not None:
        raise ValueError(f"{flag} is not supported with --extend (the path would start inside "
                         "the given video)")
    if trajectory is not None:
      from vdm.control.trajectory import load_trajectory
      paths = load_trajectory(trajectory, frames=frames, height=height, width=width,
                              max_objects=c.objects)
      out["trajectory"] = tuple(tuple(map(tuple, p.tolist())) for p in paths)
    if camera is not None:
      from vdm.control.camera import load_camera
      path = load_camera(camera, frames=frames, height=height, width=width)
      out["camera"] = tuple(map(tuple, path.tolist()))
    return out

  def _streams(self, mode: str, *, sampler: str, kv_cache: bool, image, timeline: bool) -> bool:
    """Whether a request runs as a stream (`vdm.generate.streaming.streams`). Rolling streams a
    window of several chunks at once, so inputs that change per chunk (a prompt timeline, a
    control model's paths) keep it on the matrix path."""
    c = self.config.control
    per_chunk = timeline or c.trajectory or c.camera
    return (streams(mode, sampler=sampler, kv_cache=kv_cache, image=image)
            and not (mode == "rolling" and per_chunk))

  def _check_timeline(self, timeline, switch, *, mode, image, extend, streaming, sampler,
                      frames, fps, chunk, latent_frames) -> None:
    """A timeline runs in a mode that takes one (Mode.timeline), on its chunks."""
    from vdm.control.timeline import SWITCHES
    allowed = [m for m in pipeline_modes() if MODES[m].timeline]
    if mode not in allowed or image is not None or extend is not None:
      raise ValueError(f"--prompts (a timeline) needs --mode in {allowed} (got {mode!r}) and no "
                       "--image or --extend")
    if switch not in SWITCHES:
      raise ValueError(f"--switch {switch!r}: allowed {list(SWITCHES)}")
    sched = schedule(timeline, chunk_bounds(latent_frames, chunk), fps=fps,
                     temporal_downsample=self.vae.temporal_downsample, seconds=frames / fps,
                     default_switch=switch)
    if "recache" in sched.switch and not streaming:
      streamed = [m for m in allowed if self._streams(m, sampler=sampler, kv_cache=True,
                                                      image=None, timeline=True)]
      raise ValueError(f"--switch recache re-encodes the KV cache: it needs --mode {streamed} "
                       f"with the KV cache (got --mode {mode}"
                       f"{' --no-kv-cache' if MODES[mode].streams else ''})")

  def _check_audio_request(self, audio_from, video_from, image, extend) -> None:
    """Sound options need a joint model, one given stream at most, and no image or extension;
    a given file must be readable (checked now, before the model runs)."""
    if self.audio_vae is None:
      raise ValueError("--audio / --audio-from / --video-from: this model makes no sound (its "
                       "config.json has audio.enabled=False); use a joint audio-video model")
    if audio_from is not None and video_from is not None:
      raise ValueError("--audio-from and --video-from: give one stream at most (the other is "
                       "generated)")
    if image is not None or extend is not None:
      raise ValueError("--image and --extend do not combine with sound (--audio, --audio-from, "
                       "--video-from)")
    if audio_from is not None:
      from vdm.video_io import read_audio
      read_audio(audio_from, self.sample_rate, flag="--audio-from")

  def generate_batch(self, requests: list[Request]) -> dict:
    """Several prompts at once, one row each, split over the mesh's data-parallel devices:
    frames uint8 [N, T, H, W, 3] (row i equals `generate(requests[i])` with a deterministic
    sampler; a stochastic one draws its step noise for all rows together) and seconds.

    The requests must differ only in prompt, negative prompt and seed, and use a mode sampled
    as one noise-level matrix (not the KV-cached streaming path, an image or an extension).
    """
    t0 = time.perf_counter()
    first = requests[0]
    shared = dataclasses.replace(first, prompt="", negative_prompt="", seed=0)
    for r in requests:
      if dataclasses.replace(r, prompt="", negative_prompt="", seed=0) != shared:
        raise ValueError("a batch of prompts shares every option but the prompt, negative "
                         "prompt and seed")
    spec = MODES[first.mode]
    if ((spec.streams and first.kv_cache) or first.image or first.extend or first.timeline
        or first.trajectory or first.camera or first.audio):
      raise ValueError(f"--prompt-file: mode {first.mode} with the KV cache, --image, --extend, "
                       "--prompts (a timeline), --trajectory, --camera and sound sample one "
                       "prompt at a time")
    n = len(requests)
    ids, mask = self.tokenizer.encode([r.prompt for r in requests]
                                      + [r.negative_prompt for r in requests],
                                      self.config.text.max_length)
    latent_shape = self._latent_shape(first)
    x_init = jnp.concatenate([jax.random.normal(jax.random.split(jax.random.key(r.seed))[0],
                                                latent_shape) for r in requests])
    levels, temporal_mask = generation_mode(
        first.mode, steps=first.steps, frames=latent_shape[1], chunk=first.chunk,
        context_level=first.context_noise, shift=self.config.sample.shift,
        window=first.window if spec.causal else None)
    with self._activate():
      denoiser_def, denoiser_state = nnx.split(self.denoiser)
      text = encode_text(denoiser_def, denoiser_state, jnp.asarray(ids), jnp.asarray(mask))
      if self.placement is not None:  # prompts split over the data-parallel devices
        x_init = self.placement.place_batch(np.asarray(x_init), n)
      z = sample_matrix(denoiser_def, denoiser_state, x_init, text, jnp.asarray(mask),
                        jnp.asarray(levels), jnp.asarray(temporal_mask),
                        jnp.float32(first.guidance),
                        jax.random.split(jax.random.key(first.seed))[1],
                        sampler_name=first.sampler)
      vae_def, vae_state = nnx.split(self.vae)
      frames = decode_latents(vae_def, vae_state, z, self.latent_mean, self.latent_std)
      frames = np.asarray(jax.device_get(frames))
    return dict(frames=frames, seconds_total=time.perf_counter() - t0)

  def _latent_shape(self, request: Request) -> tuple[int, ...]:
    """[1, T', h, w, C] of one request's latents."""
    sd, td = self.vae.spatial_downsample, self.vae.temporal_downsample
    latent_frames = (request.frames // td if request.extend is not None
                     else self.vae.latent_frames(request.frames))
    return (1, latent_frames, request.height // sd, request.width // sd,
            self.config.vae.latent_channels)

  def _check_given_video(self, path: str, frames: int) -> None:
    from vdm.video_io import probe_video
    if not isinstance(path, str) or not os.path.isfile(path):
      raise ValueError(f"--video-from {path!r}: no such video file")
    try:
      count = probe_video(path)[0]
    except ValueError as e:
      raise ValueError(f"--video-from: {e}") from None
    if count < frames:
      raise ValueError(f"--video-from {path!r} has {count} frames; the request needs {frames} "
                       f"(--seconds at {self.config.data.fps} fps)")

  def __call__(self, prompt: str | None = None, **options):
    """Generates a clip; returns uint8 frames [T, H, W, 3], or with sound (audio=True,
    audio_from or video_from; a joint model) (frames, waveform float32 [T * sample_rate / fps]).
    Options as in `resolve` (e.g. trajectory=, camera=, or prompts= a timeline instead of the
    prompt)."""
    result = self.generate(self.resolve(prompt, **options))
    return (result["frames"], result["audio"]) if "audio" in result else result["frames"]

  def generate(self, request: Request, on_frames=None, on_step=None, *, given_video=None,
               given_audio=None, keep_frames: bool = True) -> dict:
    """Runs a resolved request; returns frames uint8 [T, H, W, 3] (None unless keep_frames),
    their shape and timings in seconds.

    on_frames(frames uint8 [t, H, W, 3]) is called with consecutive pieces of the clip as they are
    ready: per chunk in the streaming modes (autoregressive and rolling with the KV cache; a long
    clip streams to a file in bounded memory, with keep_frames=False), once with the whole clip
    otherwise.
    on_step(Progress) is called on the host at each sampler step. The frames are the same bits
    with or without it (the step callback reads only the step index). An exception either
    callback raises (`Cancelled`) stops the generation there and is raised from here.
    A request with sound also returns 'audio' float32 [N] and 'sample_rate' (its joint sampler
    reports no steps); given_video (uint8 [T, H, W, 3], the request's size) or given_audio
    (float [N]) pin that stream as --video-from / --audio-from would a file's.
    """
    if request.audio:
      return self._generate_joint(request, on_frames, given_video, given_audio)
    if given_video is not None or given_audio is not None:
      raise ValueError("given_video / given_audio need a request with sound (audio=True)")
    global _listener
    with self._activate():  # the mesh's rules (nothing on one device)
      if on_step is None:
        return self._generate(request, on_frames, None, keep_frames)
      with _listener_lock:
        _listener = _StepListener(on_step)
        try:
          return self._generate(request, on_frames, _listener, keep_frames)
        except jax.errors.JaxRuntimeError:
          if _listener.error is not None:  # what on_step raised, not XLA's wrapper around it
            raise _listener.error from None
          raise
        finally:
          _listener = None

  def _generate(self, request: Request, on_frames, listener: _StepListener | None,
                keep_frames: bool = True) -> dict:
    t0 = time.perf_counter()
    timeline = request.timeline
    prompts = [request.prompt] if timeline is None else list(timeline["prompts"])
    # Rows 0 .. P-1: the prompts (one without a timeline); row P: the negative prompt.
    ids, mask = self.tokenizer.encode(prompts + [request.negative_prompt],
                                      self.config.text.max_length)
    td = self.vae.temporal_downsample
    latent_shape = self._latent_shape(request)
    noise_key, sampler_key = jax.random.split(jax.random.key(request.seed))
    x_init = jax.random.normal(noise_key, latent_shape)
    if request.image is not None:
      x_init = x_init.at[:, 0].set(self._encode_first_frame(request))
    denoiser_def, denoiser_state = nnx.split(self.denoiser)
    mask = jnp.asarray(mask)
    # Encoded once; the negative prompt ("" = unconditional) is the last row.
    text = encode_text(denoiser_def, denoiser_state, jnp.asarray(ids), mask)
    guidance = jnp.float32(request.guidance)
    control = self._control_inputs(request, latent_shape)
    spec = MODES[request.mode]
    bounds = chunk_bounds(latent_shape[1], request.chunk) if spec.chunked else [
        (0, latent_shape[1])]
    plan = None if timeline is None else schedule(
        load_timeline(timeline), bounds, fps=request.fps, temporal_downsample=td,
        seconds=request.frames / request.fps, default_switch=request.switch)
    negative = len(prompts)

    def rows(prompt_row):  # text and mask [2, ...] of one prompt and the negative prompt
      return text[jnp.array([prompt_row, negative])], mask[jnp.array([prompt_row, negative])]

    # One DiT row per clip instead of two (prompt, negative prompt): guidance 1 is the prompt's
    # velocity alone (a model with guidance distilled into its weights, sample.distilled_guidance,
    # and few-step generators such as Self-Forcing's sample this way); a guidance-distilled DiT
    # (dit.guidance_input) takes the scale as an input.
    guided = request.guidance != 1.0
    cache_rows = 1 if self.denoiser.dit.guidance_input or not guided else 2

    vae_def, vae_state = nnx.split(self.vae)
    decode = functools.partial(decode_latents, vae_def, vae_state, mean=self.latent_mean,
                               std=self.latent_std)
    pieces, count = [], [0]

    def emit(video):
      frames = np.asarray(jax.device_get(video))[0]
      count[0] += len(frames)
      if keep_frames:
        pieces.append(frames)
      if on_frames is not None:
        on_frames(frames)

    # A few-step generator lists its steps' levels (sample.timesteps); others use the even grid.
    spacing = tuple(self.config.sample.timesteps) or "linear"
    # (Rolling's stream runs the even grid only: given levels keep it on the matrix path.)
    if self._streams(request.mode, sampler=request.sampler, kv_cache=request.kv_cache,
                     image=request.image, timeline=timeline is not None) and not (
                         request.mode == "rolling" and spacing != "linear"):
      # Chunk by chunk with a KV cache (a ring buffer of `window` frames): equal to the matrix
      # below with a sliding-window mask, without recomputing the past; frames stream out.
      cache = empty_cache(depth=self.config.dit.depth, batch_tokens=cache_rows * (
          latent_shape[2] // self.config.dit.patch) * (latent_shape[3] // self.config.dit.patch),
          slots=request.window, heads=self.config.dit.heads,
          head_dim=self.config.dit.width // self.config.dit.heads)
      chunk_velocity = _guided_chunk_velocity if guided else _chunk_velocity

      def chunk_params(prompt_row, part):  # without guidance, the prompt's row alone
        prompt_text, prompt_mask = rows(prompt_row)
        if not guided:
          prompt_text, prompt_mask = prompt_text[:1], prompt_mask[:1]
        return (denoiser_def, denoiser_state, prompt_text, prompt_mask, guidance, part)

      params = chunk_params(0, control)

      def params_of_chunk(c):  # the chunk's own prompt and control inputs
        start, stop = bounds[c]
        part = None if control is None else jax.tree.map(lambda a: a[:, start:stop], control)
        return chunk_params(plan.prompt[c] if plan else 0, part)

      cut_starts = {bounds[c][0] for c, sw in enumerate(plan.switch) if sw == "cut"} if plan \
          else set()
      context = None
      if request.extend is not None:
        given, context = self._encode_tail(request)
        emit(given[None])
        cache = prefill(chunk_velocity, params, context, cache, chunk=request.chunk,
                        context_level=request.context_noise,
                        rng=jax.random.fold_in(sampler_key, 1 << 20))
      if listener is not None:
        listener.size(request.steps, len(chunk_bounds(latent_shape[1], request.chunk)))
      decode_step = functools.partial(_decode_step, vae_def, vae_state, mean=self.latent_mean,
                                      std=self.latent_std)
      stream = [StreamingDecoder(decode_step, context=context)]

      def on_chunk(offset, x):
        if offset in cut_starts:  # a new shot: the decoder sees nothing of the last one
          stream[0] = StreamingDecoder(decode_step, context=x[:, :1])
        emit(stream[0].push(x))
        if listener is not None:
          listener.chunk += 1

      options = dict(chunk=request.chunk, steps=request.steps,
                     context_level=request.context_noise, shift=self.config.sample.shift,
                     sampler=request.sampler, rng=sampler_key,
                     first_frame=0 if context is None else context.shape[1], on_chunk=on_chunk)
      if request.mode == "rolling":  # the chunks in flight as one window, row by row
        generate_rolling(chunk_velocity, params, x_init, cache, window=request.window,
                         **options)
      else:
        generate_autoregressive(
            chunk_velocity, params, x_init, cache, **options, spacing=spacing,
            on_step=None if listener is None else _report_step,
            params_of_chunk=params_of_chunk if (plan or control is not None) else None,
            switches=plan.switch if plan else None)
    else:
      # A causal mode's mask is limited to the window the KV-cache path sees, so both paths of
      # one request give the same frames.
      levels, temporal_mask = generation_mode(
          request.mode, steps=request.steps, frames=latent_shape[1], chunk=request.chunk,
          context_level=request.context_noise, shift=self.config.sample.shift, spacing=spacing,
          pinned=(0,) if request.image is not None else (),
          window=request.window if spec.causal else None)
      prompt_text, prompt_mask = rows(0)
      if plan is not None:  # each frame attends to its own prompt; no frame sees across a cut
        of_frame = jnp.asarray(plan.frame_prompts(bounds))
        neg = jnp.full_like(of_frame, negative)
        prompt_text = jnp.stack([text[of_frame], text[neg]])  # [2, T', L, D]
        prompt_mask = jnp.stack([mask[of_frame], mask[neg]])
        temporal_mask = temporal_mask & shot_mask(plan.shots(bounds))
      if listener is not None:
        listener.size(len(levels) - 1, 1)
      # A fused attention kernel (dit.attention_kernel) runs only without a mask: a bidirectional
      # mode without shots then passes none (every frame sees every frame either way).
      fused = self.config.dit.attention_kernel != "xla" and not spec.causal and plan is None
      z = sample_matrix(denoiser_def, denoiser_state, x_init, prompt_text, prompt_mask,
                        jnp.asarray(levels), None if fused else jnp.asarray(temporal_mask),
                        guidance, sampler_key, sampler_name=request.sampler,
                        report_steps=listener is not None, control=control, guided=guided)
      if plan is None or "cut" not in plan.switch:
        emit(decode(z))
      else:  # shot by shot, each decoded as if its first latent frame came before it
        shots = plan.shots(bounds)
        for shot in range(int(shots[-1]) + 1):
          start, stop = (int(i) for i in np.nonzero(shots == shot)[0][[0, -1]])
          if start == 0:
            emit(decode(z[:, :stop + 1]))
          else:
            emit(decode(jnp.concatenate([z[:, start:start + 1], z[:, start:stop + 1]], 1))[:, 1:])
    shape = (count[0], request.height, request.width, 3)
    return dict(frames=np.concatenate(pieces) if keep_frames else None, shape=shape,
                seconds_total=time.perf_counter() - t0)

  def _control_inputs(self, request: Request, latent_shape):
    """The DiT's `Control` [1, T', ...] of a request, or None for a model without control
    inputs (a path not given reads as zeros: vdm.control.features)."""
    c = self.config.control
    if not (c.trajectory or c.camera):
      return None
    from vdm.control import features
    from vdm.dit.model import Control
    td = self.vae.temporal_downsample
    tokens = frames = camera_tokens = None
    per_token = c.camera and c.camera_input == "tokens"
    if request.trajectory is not None:
      tokens = features.trajectory_tokens(
          np.asarray(request.trajectory, np.float64), height=request.height,
          width=request.width, stride=spatial_stride(self.config), temporal_downsample=td,
          objects=c.objects, sigma=c.sigma)[None]
    if request.camera is not None and per_token:
      camera_tokens = features.camera_tokens(
          np.asarray(request.camera), height=request.height, width=request.width,
          stride=spatial_stride(self.config), temporal_downsample=td)[None]
    elif request.camera is not None:
      frames = features.camera_frames(np.asarray(request.camera), height=request.height,
                                      width=request.width, temporal_downsample=td)[None]
    # A part not given is zeros of the model's width: explicit here, so chunk slices exist.
    t = latent_shape[1]
    n = (latent_shape[2] // self.config.dit.patch) * (latent_shape[3] // self.config.dit.patch)
    dit = self.denoiser.dit
    if c.trajectory and tokens is None:
      tokens = np.zeros((1, t, n, dit.control_token_features), np.float32)
    if per_token and camera_tokens is None:
      camera_tokens = np.zeros((1, t, n, dit.control_camera_token_features), np.float32)
    if c.camera and not per_token and frames is None:
      frames = np.zeros((1, t, dit.control_frame_features), np.float32)
    as_array = lambda a: None if a is None else jnp.asarray(a)  # noqa: E731
    return Control(as_array(tokens), as_array(frames), as_array(camera_tokens))

  def _generate_joint(self, request: Request, on_frames=None, given_video=None,
                      given_audio=None) -> dict:
    """Both streams in one sampler run (`vdm.generate.joint`): the mode's matrix over the video
    latent frames, its audio columns following the video frame at their time; a given stream
    (audio_from / video_from) is encoded and pinned at level 0, and returned as given."""
    from vdm.dit.audio import audio_video_frames
    from vdm.generate.joint import joint_levels, pack, unpack
    t0 = time.perf_counter()
    ids, mask = self.tokenizer.encode([request.prompt, request.negative_prompt],
                                      self.config.text.max_length)
    sd = self.vae.spatial_downsample
    latent_frames = self.vae.latent_frames(request.frames)
    video_shape = (latent_frames, request.height // sd, request.width // sd,
                   self.config.vae.latent_channels)
    samples = request.frames * self.sample_rate // request.fps
    audio_shape = (self.audio_vae.latent_frames(samples), self.audio_vae.latent_channels)
    noise_key, audio_key, sampler_key = jax.random.split(jax.random.key(request.seed), 3)
    video = jax.random.normal(noise_key, (1,) + video_shape)
    sound = jax.random.normal(audio_key, (1,) + audio_shape)
    given, frames, waveform = "", None, None
    if given_video is not None or request.video_from is not None:
      frames = (self._read_given_video(request) if given_video is None
                else np.asarray(given_video, np.uint8))
      if frames.shape != (request.frames, request.height, request.width, 3):
        raise ValueError(f"the given video is {frames.shape}; the request is "
                         f"{(request.frames, request.height, request.width, 3)}")
      given = "video"
      video = encode_video(*nnx.split(self.vae), frames[None], self.latent_mean, self.latent_std)
    elif given_audio is not None or request.audio_from is not None:
      from vdm.video_io import read_audio
      given = "audio"
      waveform = (read_audio(request.audio_from, self.sample_rate, flag="--audio-from",
                             samples=samples) if given_audio is None
                  else np.asarray(given_audio, np.float32))
      if waveform.shape != (samples,):
        raise ValueError(f"the given audio has {waveform.shape} samples; the request needs "
                         f"{samples}")
      sound = encode_audio(*nnx.split(self.audio_vae), jnp.asarray(waveform)[None],
                           self.audio_mean, self.audio_std)
    spec = MODES[request.mode]
    levels, temporal_mask = generation_mode(
        request.mode, steps=request.steps, frames=latent_frames, chunk=request.chunk,
        context_level=request.context_noise, shift=self.config.sample.shift,
        window=request.window if spec.causal else None)
    frame_of_audio = audio_video_frames(audio_shape[0], self.denoiser.dit.audio_per_frame,
                                        self.vae.temporal_downsample)
    levels = joint_levels(levels, frame_of_audio, given=given)
    denoiser_def, denoiser_state = nnx.split(self.denoiser)
    mask = jnp.asarray(mask)
    text = encode_text(denoiser_def, denoiser_state, jnp.asarray(ids), mask)
    x = sample_joint(denoiser_def, denoiser_state, pack(video, sound), text, mask,
                     jnp.asarray(levels), jnp.asarray(temporal_mask),
                     jnp.float32(request.guidance), jnp.float32(request.audio_guidance),
                     sampler_key, sampler_name=request.sampler, video_shape=video_shape,
                     audio_shape=audio_shape)
    video, sound = unpack(x, video_shape, audio_shape)
    if frames is None:
      vae_def, vae_state = nnx.split(self.vae)
      frames = np.asarray(decode_latents(vae_def, vae_state, video, self.latent_mean,
                                         self.latent_std))[0]
    if waveform is None:
      waveform = np.asarray(decode_audio(*nnx.split(self.audio_vae), sound, self.audio_mean,
                                         self.audio_std,
                                         iterations=self.config.audio.griffin_lim_iters))[0]
    if on_frames is not None:
      on_frames(frames)
    return dict(frames=frames, shape=frames.shape, audio=np.asarray(waveform, np.float32),
                sample_rate=self.sample_rate, seconds_total=time.perf_counter() - t0)

  def _read_given_video(self, request: Request) -> np.ndarray:
    """The first request.frames frames of --video-from, resized to the request: uint8
    [T, H, W, 3]."""
    return read_resized_video(request.video_from, "--video-from", request.height,
                              request.width)[:request.frames]

  def _encode_tail(self, request: Request):
    """The video to extend, resized: (all its frames uint8 [T, H, W, 3], normalised latents of its
    last frames [1, n, h, w, C] with n <= window, encoded as a clip of their own)."""
    video = read_resized_video(request.extend, "--extend", request.height, request.width)
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


@functools.partial(jax.jit, static_argnames=("graphdef", "sampler_name", "guided", "report_steps"))
def sample_matrix(graphdef, state, x_init, text, mask, levels, temporal_mask, guidance, rng, *,
                  sampler_name, guided=True, report_steps=False, control=None):
  """The sampler over x_init [B, T, h, w, C] for one noise-level matrix; text [2, L, D] and mask
  [2, L] are the prompt's and the negative prompt's rows, shared by the batch (or [2, T, L, D]
  and [2, T, L]: a prompt per frame), or [2B, ...]: B prompts, then their B negative prompts
  (`Pipeline.generate_batch`). guided=False (guidance 1): the prompt's velocity alone, one DiT
  call a step. report_steps: each step is reported to the on_step of the `Pipeline.generate`
  call in progress. control: a `vdm.dit.model.Control` [1, T, ...] shared by the batch and by
  both guidance branches (guidance is on the text only), or None."""
  dit = nnx.merge(graphdef, state).dit
  b = x_init.shape[0]
  if text.shape[0] != 2 * b:  # [2B]: prompt rows, then negative
    text, mask = (jnp.repeat(a, b, axis=0) for a in (text, mask))
  if control is not None:
    control = jax.tree.map(lambda a: jnp.repeat(a, b, axis=0), control)  # [B]

  def velocity(x, t, step=None):  # step: the shortcut sampler's step size [B, T]
    return guided_velocity(dit, x, t, text, mask, guidance, guided=guided, step=step,
                           temporal_mask=temporal_mask, control=control)

  return sample(sampler_name, velocity, x_init, levels, rng=rng,
                on_step=_report_step if report_steps else None)


@functools.partial(jax.jit, static_argnames=("graphdef", "sampler_name", "video_shape",
                                             "audio_shape"))
def sample_joint(graphdef, state, x_init, text, mask, levels, temporal_mask, guidance,
                 audio_guidance, rng, *, sampler_name, video_shape, audio_shape):
  """The sampler over a packed joint clip x_init [B, Tv + Ta, P] (`vdm.generate.joint.pack` of
  video latents [B, *video_shape] and audio latents [B, *audio_shape]) along levels
  [R, Tv + Ta]; each stream guided by its own scale (text and mask as in `sample_matrix`)."""
  from vdm.generate.joint import pack, unpack
  dit = nnx.merge(graphdef, state).dit
  b, tv = x_init.shape[0], video_shape[0]
  text, mask = (jnp.repeat(a, b, axis=0) for a in (text, mask))
  twice = lambda a: jnp.concatenate([a, a])  # noqa: E731

  def velocity(x, t):
    video, audio = unpack(x, video_shape, audio_shape)
    v, a = dit(twice(video), twice(t[:, :tv]), text, mask, temporal_mask,
               audio=twice(audio), audio_levels=twice(t[:, tv:]))
    return pack(guide(v[:b], v[b:], scale=guidance), guide(a[:b], a[b:], scale=audio_guidance))

  return sample(sampler_name, velocity, x_init, levels, rng=rng)


def guided_velocity(dit, x, t, text, mask, guidance, *, guided=True, step=None,
                    temporal_mask=None, cache=None, frame_offset=0, control=None,
                    frame_mask=None):
  """The velocity [B, T, ...] the sampler follows: classifier-free guided by `guidance` (two DiT
  rows per clip: text [2B, ...] holds the prompt rows, then the negative prompt's), or, for a
  guidance-distilled DiT (dit.guidance_input), one row given the scale as an input. step: the
  step size for a DiT with dit.step_input (ignored by one without). control: the clips'
  `Control` [B, T, ...] or None, the same for both guidance branches (guidance is on the text
  only). With `cache` the KV-cached chunk forward (frame_mask: a rolling window's, see
  `DiT.forward_cached`): returns (velocity, (keys, values)) of the DiT rows then."""
  b = x.shape[0]
  conditions = dict(step=step) if dit.step_input else {}

  def call(x, t, text, mask, control, **extra):
    if cache is None:
      return dit(x, t, text, mask, temporal_mask, control=control, **conditions, **extra), None
    return dit.forward_cached(x, t, text, mask, cache, frame_offset, frame_mask,
                              control=control, **conditions, **extra)

  if dit.guidance_input:  # one forward: the student was taught the guided velocity
    v, kv = call(x, t, text[:b], mask[:b], control, guidance=jnp.broadcast_to(guidance, (b,)))
  elif not guided:
    v, kv = call(x, t, text[:b], mask[:b], control)
  else:  # the prompt and the negative prompt as one batch of 2B rows
    if "step" in conditions and step is not None:
      conditions = dict(step=jnp.concatenate([step, step]))
    both_control = None if control is None else jax.tree.map(
        lambda a: jnp.concatenate([a, a]), control)
    both, kv = call(jnp.concatenate([x, x]), jnp.concatenate([t, t]), text, mask, both_control)
    v = guide(both[:b], both[b:], scale=guidance)
  return v if cache is None else (v, kv)


def _guided_chunk_velocity(params, x, t, cache, frame_offset, frame_mask=None, step=None):
  """`vdm.generate.streaming` chunk function: the guided DiT on one chunk (or a rolling window,
  with its frame_mask) with the KV cache (`guided_velocity`; the cache holds both rows, or one
  for a guidance-distilled DiT); the chunk's control inputs (a `Control` [1, k, ...] or None) go
  to both guidance branches."""
  graphdef, state, text, mask, guidance, control = params
  dit = nnx.merge(graphdef, state).dit
  return guided_velocity(dit, x, t, text, mask, guidance, step=step, cache=cache,
                         frame_offset=frame_offset, control=control, frame_mask=frame_mask)


def _chunk_velocity(params, x, t, cache, frame_offset, frame_mask=None, step=None):
  """`vdm.generate.streaming` chunk function without guidance: the DiT on one chunk (or a
  rolling window, with its frame_mask) with the KV cache, conditioned on the prompt alone
  (params' text and mask hold its row only; the cache holds one row) and the chunk's control
  inputs (a `Control` [1, k, ...] or None)."""
  graphdef, state, text, mask, guidance, control = params
  dit = nnx.merge(graphdef, state).dit
  return guided_velocity(dit, x, t, text, mask, guidance, guided=False, step=step, cache=cache,
                         frame_offset=frame_offset, control=control, frame_mask=frame_mask)


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
def encode_audio(graphdef, state, waveform, mean, std):
  """Waveform [B, N] in [-1, 1] -> normalised audio latent means [B, Ta, Ca] through the audio
  VAE `graphdef`/`state` (mean, std: its latent statistics [Ca])."""
  return (nnx.merge(graphdef, state).encode_audio(waveform)[0] - mean) / std


@functools.partial(jax.jit, static_argnums=0, static_argnames=("iterations",))
def decode_audio(graphdef, state, z, mean, std, *, iterations: int):
  """Normalised audio latents [B, Ta, Ca] -> waveform float32 [B, N] in [-1, 1] (the audio VAE's
  magnitudes, Griffin-Lim with `iterations`)."""
  return nnx.merge(graphdef, state).decode_audio(z * std + mean, iterations=iterations)


@functools.partial(jax.jit, static_argnums=0)
def _decode_step(graphdef, state, z, cache, mean, std):
  """One streamed chunk: (normalised latents, decoder cache) -> (uint8 frames, new cache)."""
  video, cache = nnx.merge(graphdef, state).decode_step(z * std + mean, cache)
  return denormalize_pixels(video), cache


def _replicated(split, placement):
  """(graphdef, state) with the state's arrays on every device of the placement's mesh."""
  graphdef, state = split
  return graphdef, jax.device_put(state, placement.replicated)


def read_resized_video(path: str, flag: str, height: int, width: int) -> np.ndarray:
  """A video file's frames uint8 [T, height, width, 3] (bicubic resize, with a warning, when its
  size differs); raises ValueError naming `flag` when it is not readable."""
  from vdm.video_io import read_video
  try:
    video = read_video(path)
  except Exception as e:  # noqa: BLE001 - a file damaged past its first frame
    raise ValueError(f"{flag} {path!r} is not a readable video ({e})") from None
  if video.shape[1:3] != (height, width):
    warnings.warn(f"{flag} video is {video.shape[2]}x{video.shape[1]}; resized to "
                  f"{width}x{height}")
    video = np.asarray(jnp.round(jnp.clip(jax.image.resize(
        video.astype(np.float32), (len(video), height, width, 3), "bicubic"),
        0, 255)).astype(jnp.uint8))
  return video


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
