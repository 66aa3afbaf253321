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
"""
from __future__ import annotations

import numpy as np

MODES = ("parallel", "autoregressive", "rolling", "image_to_video", "keyframes")
SPACINGS = ("linear", "leading", "trailing")


# ----------------------------------------------------------------------------- time grids

def time_grid(steps: int, *, shift: float = 1.0, spacing: str = "linear",
              train_steps: int = 1000) -> np.ndarray:
  """Levels from (about) 1 down to 0 for `steps` sampler steps, [steps + 1], decreasing.

  spacing (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed",
  Table 2), with discrete training timestep i in [0, train_steps) read as level (i + 1) / N:
    'linear':   levels evenly spaced from 1 to 0 (continuous; the default, unchanged).
    'trailing': timesteps counted down from the top, round(N - k N / S) - 1; starts at exactly 1.
      Coincides with 'linear' whenever N is a multiple of steps.
    'leading':  timesteps k (N // S) counted up from 0; the top level is below 1, so sampling
      never starts from pure noise (the flaw the paper names); kept to reproduce older samplers.
  The last level is always 0. `shift` > 1 then spends more steps at high noise,
  t' = s t / (1 + (s - 1) t) (SD3), which helps at larger resolutions and lengths where more of
  the structure is decided early.
  """
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
  if spacing not in SPACINGS:
    raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
  if not shift > 0:
    raise ValueError(f"shift must be > 0, got {shift!r}")
  n = train_steps
  if spacing == "linear":
    t = np.linspace(1.0, 0.0, steps + 1)
  else:
    if steps > n:
      raise ValueError(f"steps={steps} must be <= train_steps={n} for spacing {spacing!r}")
    if spacing == "trailing":
      timesteps = np.round(n - np.arange(steps) * n / steps) - 1
    else:
      timesteps = (np.arange(steps) * (n // steps))[::-1]
    t = np.append((timesteps + 1.0) / n, 0.0)
  return shift * t / (1.0 + (shift - 1.0) * t)


def shifted_grid_from(top: float, steps: int, *, shift: float = 1.0,
                      spacing: str = "linear") -> np.ndarray:
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
                    spacing: str = "linear") -> np.ndarray:
  """Full-sequence generation: every frame shares one level per step. Returns [steps + 1, frames]."""
  _check_frames(frames)
  grid = time_grid(steps, shift=shift, spacing=spacing)
  return np.repeat(grid[:, None], frames, axis=1).astype(np.float32)


def parallel_mode(steps: int, frames: int, *, shift: float = 1.0, spacing: str = "linear"):
  """All frames denoised together, bidirectional. Returns (levels [S + 1, T], mask [T, T])."""
  return parallel_levels(steps, frames, shift=shift, spacing=spacing), bidirectional_mask(frames)


def autoregressive_mode(steps: int, frames: int, *, chunk: int, context_level: float = 0.0,
                        shift: float = 1.0, spacing: str = "linear"):
  """Chunks of `chunk` frames generated one after another, each through all `steps` steps.

  Chunk k waits at the top level while chunks < k are generated, goes 1 -> context_level in its
  own S steps, then sits at context_level (constant: the sampler leaves it alone) as context for
  the later chunks. Rows are concatenated, so R = chunks * steps + 1; the last row is 0
  (see the module docstring for the context_level contract). Block-causal mask.
  Returns (levels [R, T] float32, mask [T, T] bool).
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
  return levels, block_causal_mask(frames, chunk)


def rolling_mode(steps: int, frames: int, *, chunk: int, context_level: float = 0.0,
                 shift: float = 1.0, spacing: str = "linear"):
  """Diagonal / pyramid denoising (Diffusion Forcing): chunk k runs the same S-step schedule as
  chunk k - 1, one step later, so levels rise with frame index and the pattern slides by one chunk
  per step. R = steps + chunks rows (one model call per row, against autoregressive's
  steps per chunk). Finished chunks sit at context_level until the last row (all 0).
  Block-causal mask. Returns (levels [R, T] float32, mask [T, T] bool).
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
  return levels, block_causal_mask(frames, chunk)


def image_to_video_mode(steps: int, frames: int, *, shift: float = 1.0, spacing: str = "linear"):
  """Parallel generation with frame 0 (the given image's latent) pinned at level 0."""
  levels, mask = parallel_mode(steps, frames, shift=shift, spacing=spacing)
  return pin_frames(levels, (0,)), mask


def keyframes_mode(steps: int, frames: int, *, shift: float = 1.0, spacing: str = "linear"):
  """Parallel generation between two given keyframes: the first and last frames pinned at 0."""
  levels, mask = parallel_mode(steps, frames, shift=shift, spacing=spacing)
  return pin_frames(levels, (0, frames - 1)), mask


def generation_mode(mode: str, *, steps: int, frames: int, chunk: int = 1,
                    context_level: float = 0.0, shift: float = 1.0, spacing: str = "linear",
                    pinned=()):
  """(levels [R, T] float32, mask [T, T] bool) of a generation mode (one of MODES).

  chunk and context_level apply to 'autoregressive' and 'rolling' (see `chunk_ids`);
  `pinned` lists extra frames held at level 0 in any mode (given frames, e.g. extension).
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if mode in ("autoregressive", "rolling"):
    fn = autoregressive_mode if mode == "autoregressive" else rolling_mode
    levels, mask = fn(steps, frames, chunk=chunk, context_level=context_level, shift=shift,
                      spacing=spacing)
  else:
    fn = dict(parallel=parallel_mode, image_to_video=image_to_video_mode,
              keyframes=keyframes_mode)[mode]
    levels, mask = fn(steps, frames, shift=shift, spacing=spacing)
  return (pin_frames(levels, pinned) if pinned else levels), mask


def noise_levels(mode: str, *, steps: int, frames: int, shift: float = 1.0, **options) -> np.ndarray:
  """The noise-level matrix [R, frames] of a mode: `generation_mode(...)[0]` (options as there)."""
  return generation_mode(mode, steps=steps, frames=frames, shift=shift, **options)[0]
