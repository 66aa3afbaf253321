"""Generation modes as noise-level matrices.

A mode is a matrix `levels[S + 1, T]`: row s holds each frame's noise level before sampler step s,
row S the levels at the end. The sampler (`vdm.diffusion.euler_sample`) only reads this matrix,
so parallel, autoregressive and rolling generation are the same code with different matrices.
"""
from __future__ import annotations

import numpy as np

MODES = ("parallel",)


def time_grid(steps: int, *, shift: float = 1.0) -> np.ndarray:
  """Levels 1 -> 0 in `steps` Euler steps, [steps + 1], decreasing.

  `shift` > 1 spends more steps at high noise (t' = s t / (1 + (s - 1) t)), which helps at larger
  resolutions where more of the structure is decided early.
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  t = np.linspace(1.0, 0.0, steps + 1)
  return shift * t / (1.0 + (shift - 1.0) * t)


def parallel_levels(steps: int, frames: int, *, shift: float = 1.0) -> np.ndarray:
  """Full-sequence generation: every frame shares one level per step. Returns [steps + 1, frames]."""
  if frames < 1:
    raise ValueError(f"frames must be >= 1, got {frames}")
  return np.repeat(time_grid(steps, shift=shift)[:, None], frames, axis=1).astype(np.float32)


def noise_levels(mode: str, *, steps: int, frames: int, shift: float = 1.0) -> np.ndarray:
  """The noise-level matrix [steps + 1, frames] of a generation mode."""
  if mode == "parallel":
    return parallel_levels(steps, frames, shift=shift)
  raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
