"""Causal short-time Fourier transform, log-magnitude features and Griffin-Lim: pure jnp functions
the audio VAE reads and writes through.

Framing is causal: frame m holds the samples [(m + 1) hop - n_fft, (m + 1) hop) (zeros before the
clip), so frame m never sees a sample after its own hop, and a clip of N samples (a multiple of
hop) has N / hop frames. The window is a periodic Hann of n_fft = 2 hop or 4 hop samples, whose
overlapping squares add to a constant, so `istft` inverts `stft` exactly (but for the last
n_fft - hop samples, which fewer frames cover; see `istft`).

Features: magnitudes scaled so a steady sinusoid of amplitude a reads a at its bin, in decibels,
floored at FLOOR_DB and mapped to [-1, 1]: feature = 1 + dB / (-FLOOR_DB / 2) (0 dB -> 1, FLOOR_DB
-> -1). Silence is exactly -1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

FLOOR_DB = -80.0


def check_framing(n_fft: int, hop: int) -> None:
  """Raises unless n_fft is 2 or 4 hops (a Hann window whose overlapping squares are constant)."""
  if not isinstance(hop, int) or hop < 1 or n_fft not in (2 * hop, 4 * hop):
    raise ValueError(f"audio.n_fft={n_fft} must be 2 or 4 times audio.hop={hop} (an invertible "
                     "causal STFT with a Hann window)")


def window(n_fft: int) -> np.ndarray:
  """The periodic Hann window float32 [n_fft]."""
  n = np.arange(n_fft)
  return (0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)).astype(np.float32)


def _frame_indices(frames: int, n_fft: int, hop: int) -> np.ndarray:
  """Sample index of every tap of every frame, int [S, n_fft], in the left-padded signal."""
  return (np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]).astype(np.int32)


def stft(audio: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """audio [..., N] (N a multiple of hop) -> complex spectra [..., N / hop, n_fft // 2 + 1]."""
  check_framing(n_fft, hop)
  n = audio.shape[-1]
  if n % hop:
    raise ValueError(f"audio length {n} must be a multiple of audio.hop={hop}")
  pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft - hop, 0)]
  padded = jnp.pad(audio.astype(jnp.float32), pad)
  frames = padded[..., _frame_indices(n // hop, n_fft, hop)] * window(n_fft)
  return jnp.fft.rfft(frames, axis=-1)


def istft(spectra: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """Inverse of `stft` by weighted overlap-add: complex [..., S, n_fft // 2 + 1] -> [..., S hop].

  Each sample is the window-weighted average of the frames covering it (sum w x / sum w^2), so a
  spectrogram that came from a signal gives that signal back. The last n_fft - hop samples are
  covered by fewer frames than the rest; where the window's square sums to less than 1e-3 (the
  last ~6 % of a window, 2 ms at n_fft = 500 and 16 kHz) the sample is attenuated rather than
  divided by ~0.
  """
  check_framing(n_fft, hop)
  frames = spectra.shape[-2]
  w = window(n_fft)
  pieces = jnp.fft.irfft(spectra, n=n_fft, axis=-1) * w  # [..., S, n_fft]
  idx = _frame_indices(frames, n_fft, hop).reshape(-1)
  length = frames * hop + n_fft - hop
  batch = pieces.shape[:-2]
  total = jnp.zeros(batch + (length,), pieces.dtype).at[..., idx].add(
      pieces.reshape(batch + (-1,)))
  norm = np.zeros(length, np.float32)
  np.add.at(norm, idx, np.tile(w ** 2, frames))
  out = total / np.maximum(norm, 1e-3)
  return out[..., n_fft - hop:]


def magnitude_scale(n_fft: int) -> float:
  """Divides |stft| so a steady sinusoid of amplitude a reads a at its bin (2 / sum(window))."""
  return n_fft / 4.0


def features(audio: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """audio [..., N] float in [-1, 1] -> log-magnitude features [..., N / hop, n_fft // 2 + 1] in
  [-1, ~1] (see the module docstring)."""
  magnitude = jnp.abs(stft(audio, n_fft, hop)) / magnitude_scale(n_fft)
  db = 20.0 * jnp.log10(jnp.maximum(magnitude, 10.0 ** (FLOOR_DB / 20.0)))
  return 1.0 + db / (-FLOOR_DB / 2.0)


def magnitudes_of(feats: jax.Array, n_fft: int) -> jax.Array:
  """Inverse of the feature map: features [..., S, F] -> |stft| [..., S, F] (the floor, and
  anything below it, -> 0)."""
  db = (feats - 1.0) * (-FLOOR_DB / 2.0)
  magnitude = jnp.where(feats <= -1.0, 0.0, 10.0 ** (db / 20.0))
  return magnitude * magnitude_scale(n_fft)


def griffin_lim(magnitudes: jax.Array, n_fft: int, hop: int, *, iterations: int = 64,
                momentum: float = 0.99) -> jax.Array:
  """A waveform [..., S hop] whose `stft` magnitudes approach `magnitudes` [..., S, F]: the fast
  Griffin-Lim algorithm (Perraudin et al. 2013: alternate projections with `momentum`), starting
  from zero phase, so it is deterministic. Phase is not something the audio VAE models: for
  these sounds (tones, clicks) what is heard, and measured, is in the magnitudes."""
  def project(spectra):
    return stft(istft(spectra, n_fft, hop), n_fft, hop)

  def step(carry, _):
    spectra, previous = carry
    rebuilt = project(spectra)
    accelerated = rebuilt + momentum * (rebuilt - previous)
    phase = accelerated / jnp.maximum(jnp.abs(accelerated), 1e-8)
    return (magnitudes * phase, rebuilt), None

  start = magnitudes.astype(jnp.complex64)
  (spectra, _), _ = jax.lax.scan(step, (start, start), None, length=iterations)
  return istft(spectra, n_fft, hop)
