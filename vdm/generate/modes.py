"""Generation modes as noise-level matrices plus a temporal attention mask.

A mode is a matrix `levels[R, T]`: row r holds each frame's noise level before sampler step r, the
last row the levels at the end (all 0: a finished clip). The samplers (`vdm.diffusion.samplers`)
only read this matrix, so parallel, autoregressive and rolling generation are the same code with
different matrices. Beside it a mode returns `mask[T, T]` (bool, mask[i, j]: frame i may attend
frame j) for the DiT's temporal attention.

Contract shared by every matrix here (and checked by tests/test_modes.py):
  * levels never increase down a column, and the last row is all 0;
  * a frame whose level is constant over a step is not touched by the sampler;
  * pinned frames (given images) are 0 in every row;
  * with `context_level` c > 0 (the Diffusion Forcing knob) a finished chunk stops at level c and
    stays there, constant, while later chunks are generated, so the model always sees it as a
    lightly noised context; the last row takes every frame to 0. Because the mask is block-causal,
    that last step for chunk k sees exactly what the pass right after chunk k finished saw, so a
    streaming (KV-cache) caller can emit chunk k's clean frames as x - c * v from the pass that
    caches it. The sampler never moves a constant-level frame, so such a caller may also replace a
    finished chunk once with a fresh re-noise of its clean prediction at level c (the sampler's
    own value is already a valid sample at c); re-noising is the caller's job, never the
    sampler's, and happens once per chunk.

Each mode is one registered `Mode` (bottom of this file): its matrix, its mask, what it needs and
how it may run. The pipeline, the CLI's `--mode` help and choices, config validation, extension
and the eval suites all read the registry, so adding a mode is one function and one
`register_mode` call (docs/add-a-mode.md).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

SPACINGS = ("linear", "leading", "trailing")


# ----------------------------------------------------------------------------- time grids

def time_grid(steps: int, *, shift: float = 1.0, spacing: str | tuple = "linear",
              train_steps: int = 1000) -> np.ndarray:
  """Levels from (about) 1 down to 0 for `steps` sampler steps, [steps + 1], decreasing.

  spacing (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed",
  Table 2), with discrete training timestep i in [0, train_steps) read as level (i + 1) / N:
    'linear':   levels evenly spaced from 1 to 0 (continuous; the default, unchanged).
    'trailing': timesteps counted down from the top, round(N - k N / S) - 1; starts at exactly 1.
      Coincides with 'linear' whenever N is a multiple of steps.
    'leading':  timesteps k (N // S) counted up from 0; the top level is below 1, so sampling
      never starts from pure noise (the flaw the paper names); kept to reproduce older samplers.
    a tuple of levels, decreasing in (0, 1]: the steps' levels given outright, as a few-step
      generator lists its timesteps / 1000 (CausVid's (1, 0.757, 0.522); a distilled student's
      own levels; `sample.timesteps`); fewer steps than levels take evenly spaced ones
      (`explicit_levels`).
  The last level is always 0. `shift` > 1 then spends more steps at high noise,
  t' = s t / (1 + (s - 1) t) (SD3), which helps at larger resolutions and lengths where more of
  the structure is decided early. (Self-Forcing "warps" its list (1, 0.75, 0.5, 0.25) with
  shift 5 in exactly this way.)
  """
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
  if not shift > 0:
    raise ValueError(f"shift must be > 0, got {shift!r}")
  n = train_steps
  if not isinstance(spacing, str):
    t = np.append(explicit_levels(spacing, steps), 0.0)
  elif spacing == "linear":
    t = np.linspace(1.0, 0.0, steps + 1)
  elif spacing in SPACINGS:
    if steps > n:
      raise ValueError(f"steps={steps} must be <= train_steps={n} for spacing {spacing!r}")
    if spacing == "trailing":
      timesteps = np.round(n - np.arange(steps) * n / steps) - 1
    else:
      timesteps = (np.arange(steps) * (n // steps))[::-1]
    t = np.append((timesteps + 1.0) / n, 0.0)
  else:
    raise ValueError(f"spacing must be one of {SPACINGS} or a tuple of levels, got {spacing!r}")
  return shift * t / (1.0 + (shift - 1.0) * t)


def explicit_levels(levels, steps: int) -> np.ndarray:
  """`steps` of a given list of step levels (decreasing, in (0, 1]), checked. [steps]

  With as many steps as levels, the levels themselves; with fewer, evenly spaced ones by index
  (2 of 4: the first and third; 1: the first), so each step of a few-step model starts at a
  level it was trained (or distilled) to step from.
  """
  t = np.asarray(levels, np.float64)
  if t.ndim != 1 or len(t) < steps or not np.all((t > 0) & (t <= 1)) or np.any(
      np.diff(t) >= 0):
    raise ValueError(f"explicit levels must be {steps} decreasing numbers in (0, 1] (one per "
                     f"step; of more, evenly spaced ones are taken), got {tuple(levels)!r}")
  n = len(t)
  return t[np.round(np.arange(steps) * n / steps).astype(int)]


def shifted_grid_from(top: float, steps: int, *, shift: float = 1.0,
                      spacing: str | tuple = "linear") -> np.ndarray:
  """`time_grid` rescaled to end at `top` instead of 0: top + (1 - top) * grid, [steps + 1]."""
  return top + (1.0 - top) * time_grid(steps, shift=shift, spacing=spacing)


# ----------------------------------------------------------------------------- masks

def bidirectional_mask(frames: int) -> np.ndarray:
  """Every frame attends every frame, [T, T] bool."""
  return np.ones((frames, frames), bool)


def allowed_chunks(frames: int) -> list[int]:
  """Chunk sizes that split `frames` latent frames: divisors of T, and divisors of T - 1 (then the
  first latent frame, which the causal VAE encodes alone as an image, is a chunk of its own)."""
  return sorted({k for k in range(1, frames + 1)
                 if frames % k == 0 or (frames > 1 and (frames - 1) % k == 0)})


def chunk_ids(frames: int, chunk: int) -> np.ndarray:
  """The chunk each latent frame belongs to, [T] int32, numbered 0, 1, ... in time order.

  Chunks of `chunk` frames when they tile the clip; otherwise frame 0 alone, then chunks of
  `chunk` (e.g. 5 latent frames of a 9-frame clip with chunk 4: [0], [1..4]).
  """
  _check_chunk(chunk, frames)
  i = np.arange(frames)
  if frames % chunk == 0:
    return (i // chunk).astype(np.int32)
  return np.where(i == 0, 0, 1 + (i - 1) // chunk).astype(np.int32)


def chunk_bounds(frames: int, chunk: int) -> list[tuple[int, int]]:
  """[(start, stop)] of each chunk in time order (see `chunk_ids`)."""
  ids = chunk_ids(frames, chunk)
  return [(int(np.argmax(ids == c)), int(frames - np.argmax(ids[::-1] == c)))
          for c in range(int(ids[-1]) + 1)]


def block_causal_mask(frames: int, chunk: int) -> np.ndarray:
  """mask[i, j] = chunk(j) <= chunk(i): a chunk sees itself and earlier chunks, [T, T] bool."""
  c = chunk_ids(frames, chunk)
  return c[None, :] <= c[:, None]


# ----------------------------------------------------------------------------- validation

def _check_frames(frames: int):
  if not isinstance(frames, (int, np.integer)) or frames < 1:
    raise ValueError(f"frames must be an integer >= 1, got {frames!r}")


def _check_chunk(chunk: int, frames: int):
  if (not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool)
      or chunk not in allowed_chunks(frames)):
    raise ValueError(f"chunk must divide frames={frames} or frames - 1 (allowed: "
                     f"{allowed_chunks(frames)}), got {chunk!r}")


def _check_context(context_level: float):
  if not 0.0 <= context_level < 1.0:
    raise ValueError(f"context_level must be in [0, 1), got {context_level!r}")


def pin_frames(levels: np.ndarray, pinned) -> np.ndarray:
  """Sets the columns of the given frames to 0 in every row (given images). Returns a copy."""
  levels = np.array(levels, np.float32)
  frames = levels.shape[1]
  for f in pinned:
    if not -frames <= f < frames:
      raise ValueError(f"pinned frame {f} is outside 0..{frames - 1} (frames={frames})")
    levels[:, f] = 0.0
  return levels


# ----------------------------------------------------------------------------- modes

def parallel_levels(steps: int, frames: int, *, shift: float = 1.0,
                    spacing: str | tuple = "linear") -> np.ndarray:
  """Full-sequence generation: every frame shares one level per step. Returns [steps + 1, frames]."""
  _check_frames(frames)
  grid = time_grid(steps, shift=shift, spacing=spacing)
  return np.repeat(grid[:, None], frames, axis=1).astype(np.float32)


def autoregressive_levels(steps: int, frames: int, *, chunk: int, context_level: float = 0.0,
                          shift: float = 1.0, spacing: str | tuple = "linear") -> np.ndarray:
  """Chunks of `chunk` frames generated one after another, each through all `steps` steps.

  Chunk k waits at the top level while chunks < k are generated, goes 1 -> context_level in its
  own S steps, then sits at context_level (constant: the sampler leaves it alone) as context for
  the later chunks. Rows are concatenated, so R = chunks * steps + 1; the last row is 0
  (see the module docstring for the context_level contract). Returns levels [R, T] float32.
  """
  _check_frames(frames)
  _check_chunk(chunk, frames)
  _check_context(context_level)
  turn = shifted_grid_from(context_level, steps, shift=shift, spacing=spacing)
  bounds = chunk_bounds(frames, chunk)
  n = len(bounds)
  levels = np.empty((n * steps + 1, frames), np.float32)
  for k, (start, stop) in enumerate(bounds):
    cols = slice(start, stop)
    levels[:k * steps, cols] = turn[0]
    levels[k * steps:(k + 1) * steps + 1, cols] = turn[:, None]
    levels[(k + 1) * steps:, cols] = context_level
  levels[-1] = 0.0
  return levels


def rolling_levels(steps: int, frames: int, *, chunk: int, context_level: float = 0.0,
                   shift: float = 1.0, spacing: str | tuple = "linear") -> np.ndarray:
  """Diagonal / pyramid denoising (Diffusion Forcing): chunk k runs the same S-step schedule as
  chunk k - 1, one step later, so levels rise with frame index and the pattern slides by one chunk
  per step. R = steps + chunks rows (one model call per row, against autoregressive's
  steps per chunk). Finished chunks sit at context_level until the last row (all 0).
  Returns levels [R, T] float32.
  """
  _check_frames(frames)
  _check_chunk(chunk, frames)
  _check_context(context_level)
  turn = shifted_grid_from(context_level, steps, shift=shift, spacing=spacing)
  k_of_frame = chunk_ids(frames, chunk)
  rows = steps + int(k_of_frame[-1]) + 1
  progress = np.clip(np.arange(rows)[:, None] - k_of_frame[None, :], 0, steps)
  levels = turn[progress].astype(np.float32)
  levels[-1] = 0.0
  return levels


def image_to_video_levels(steps: int, frames: int, *, shift: float = 1.0,
                          spacing: str | tuple = "linear") -> np.ndarray:
  """Parallel generation with frame 0 (the given image's latent) pinned at level 0."""
  return pin_frames(parallel_levels(steps, frames, shift=shift, spacing=spacing), (0,))


def keyframes_levels(steps: int, frames: int, *, shift: float = 1.0,
                     spacing: str | tuple = "linear") -> np.ndarray:
  """Parallel generation between two given keyframes: the first and last frames pinned at 0."""
  return pin_frames(parallel_levels(steps, frames, shift=shift, spacing=spacing), (0, frames - 1))


def keyframes_first_levels(steps: int, frames: int, *, chunk: int, context_level: float = 0.0,
                           shift: float = 1.0, spacing: str | tuple = "linear") -> np.ndarray:
  """Coarse to fine: the keyframes (the first frame of each chunk, and the last frame) are
  generated first, all together, while the frames between them wait at pure noise; then the
  frames between are generated around the finished keyframes, which sit at context_level.
  Bidirectional, so every in-between frame sees the keyframes on both sides (the layout of the
  whole clip is decided before any detail). Needs a model trained with per-frame levels
  (Diffusion Forcing). R = 2 * steps + 1. Returns levels [R, T] float32.
  """
  _check_frames(frames)
  _check_chunk(chunk, frames)
  _check_context(context_level)
  keys = np.zeros(frames, bool)
  keys[[start for start, _ in chunk_bounds(frames, chunk)] + [frames - 1]] = True
  first = shifted_grid_from(context_level, steps, shift=shift, spacing=spacing)
  then = time_grid(steps, shift=shift, spacing=spacing)
  levels = np.empty((2 * steps + 1, frames), np.float32)
  levels[:steps + 1] = np.where(keys, first[:, None], 1.0)
  levels[steps:] = np.where(keys, context_level, then[:, None])
  levels[-1] = 0.0
  return levels


def sliding_window_mask(frames: int, chunk: int, window: int) -> np.ndarray:
  """The temporal mask a ring buffer of `window` frames implies: frame i sees its own chunk and
  the `window` frames before that chunk. [frames, frames] bool. With window >= frames it is
  `block_causal_mask`."""
  chunk_of = chunk_ids(frames, chunk)
  start = np.array([chunk_bounds(frames, chunk)[c][0] for c in chunk_of])
  j = np.arange(frames)[None, :]
  return (chunk_of[None, :] <= chunk_of[:, None]) & (j >= (start - window)[:, None])


# ----------------------------------------------------------------------------- the registry

@dataclasses.dataclass(frozen=True)
class Mode:
  """A generation mode: what the pipeline, the CLI, config validation and the eval suites read.

  levels(steps, frames, *, chunk, context_level, shift, spacing) -> [R, frames] float32: the
    noise-level matrix (frames it pins itself at 0 in every row).
  chunked: takes `chunk` (latent frames, `chunk_ids` chunking) and `context_level`.
  causal: the temporal mask is block-causal over those chunks, limited to `window` earlier
    frames when the caller has one (what the KV cache's ring buffer sees); otherwise the mask
    is bidirectional.
  streams: can run chunk by chunk with the KV cache (vdm.generate.streaming), in bounded memory
    and up to `sample.max_stream_frames`; the matrix of the same mode gives the same frames.
  needs_image: the first frame is given (`--image`).
  in_pipeline: offered by `vdm.Pipeline` / `vdm sample` (a mode that needs inputs the pipeline
    cannot encode, e.g. a last frame for a causal VAE, is only reachable from Python).
  extension: may continue given frames (vdm.generate.extension pins them at level 0).
  temporal_patch: runs on a DiT that groups latent frames into tokens (dit.temporal_patch > 1).
  timeline: runs prompt timelines (`--prompts`, vdm.control.timeline): chunk by chunk in time,
    each chunk attending to its own prompt, a hard cut masking what came before it.
  """
  name: str
  doc: str
  levels: Callable[..., np.ndarray]
  chunked: bool = False
  causal: bool = False
  streams: bool = False
  needs_image: bool = False
  in_pipeline: bool = True
  extension: bool = False
  temporal_patch: bool = False
  timeline: bool = False

  def mask(self, frames: int, *, chunk: int = 1, window: int | None = None) -> np.ndarray:
    """The temporal mask [frames, frames] bool (see the class docstring)."""
    if not self.causal:
      return bidirectional_mask(frames)
    if window is None:
      return block_causal_mask(frames, chunk)
    return sliding_window_mask(frames, chunk, window)


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
  """Adds a mode to the registry; returns it."""
  MODES[mode.name] = mode
  return mode


def get_mode(name: str) -> Mode:
  if name not in MODES:
    raise ValueError(f"mode must be one of {tuple(MODES)}, got {name!r}")
  return MODES[name]


def shot_mask(shots) -> np.ndarray:
  """mask[i, j] = frames i and j are in the same shot (shots [T] int, growing at each hard cut
  of a prompt timeline): combined with a mode's mask, no frame sees across a cut. [T, T] bool."""
  shots = np.asarray(shots)
  return shots[:, None] == shots[None, :]


def pipeline_modes() -> tuple[str, ...]:
  """The modes `vdm sample` and `vdm.Pipeline` offer, in registration order."""
  return tuple(name for name, mode in MODES.items() if mode.in_pipeline)


def generation_mode(mode: str, *, steps: int, frames: int, chunk: int = 1,
                    context_level: float = 0.0, shift: float = 1.0, spacing: str | tuple = "linear",
                    pinned=(), window: int | None = None):
  """(levels [R, T] float32, mask [T, T] bool) of a registered mode.

  chunk and context_level apply to chunked modes (see `chunk_ids`); `pinned` lists extra frames
  held at level 0 in any mode (given frames, e.g. extension); `window` limits how many earlier
  latent frames a chunk attends (the KV cache's ring buffer; None: all).
  """
  spec = get_mode(mode)
  options = dict(chunk=chunk, context_level=context_level) if spec.chunked else {}
  levels = spec.levels(steps, frames, shift=shift, spacing=spacing, **options)
  mask = spec.mask(frames, chunk=chunk, window=window)
  return (pin_frames(levels, pinned) if pinned else levels), mask


def noise_levels(mode: str, *, steps: int, frames: int, shift: float = 1.0, **options) -> np.ndarray:
  """The noise-level matrix [R, frames] of a mode: `generation_mode(...)[0]` (options as there)."""
  return generation_mode(mode, steps=steps, frames=frames, shift=shift, **options)[0]


register_mode(Mode("parallel", "every frame at one shared level per step; bidirectional",
                   parallel_levels, extension=True, temporal_patch=True))
register_mode(Mode("autoregressive", "chunk after chunk, earlier chunks as clean context; "
                   "block-causal, KV-cached", autoregressive_levels, chunked=True, causal=True,
                   streams=True, extension=True, timeline=True))
register_mode(Mode("rolling", "diagonal: levels rise with frame index and slide one chunk per "
                   "step; block-causal, KV-cached", rolling_levels, chunked=True, causal=True,
                   streams=True, extension=True, timeline=True))
register_mode(Mode("image_to_video", "parallel, the given first frame pinned at level 0",
                   image_to_video_levels, needs_image=True, temporal_patch=True))
register_mode(Mode("keyframes", "parallel between a given first and last frame (Python only: "
                   "the causal VAE cannot encode a last frame alone)", keyframes_levels,
                   in_pipeline=False))
# The worked example of docs/add-a-mode.md: one levels function above, this line, and its tests
# (tests/test_modes.py).
register_mode(Mode("keyframes_first", "coarse to fine: the first frame of each chunk and the "
                   "last frame first, then the frames between; bidirectional",
                   keyframes_first_levels, chunked=True))
