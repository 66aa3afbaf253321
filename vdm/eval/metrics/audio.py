"""Audio measurements for the synthetic soundtracks (`vdm.data.soundtrack`), pure numpy: where
clicks start, which colour pitches sound and how loud, how loud each video frame's audio is,
and the offset between two event trains by cross-correlation.

Waveforms are float [N] in [-1, 1] at `sample_rate`; frame f of a video at fps covers samples
[f * sample_rate / fps, (f + 1) * sample_rate / fps).
"""
from __future__ import annotations

import numpy as np

from vdm.data import soundtrack

# |second difference| above this starts a click: a ground-truth click's first sample gives
# CLICK_AMPLITUDE (0.4) there, while the loudest three tones give at most ~0.08.
CLICK_THRESHOLD = 0.2
MIN_CLICK_GAP = 0.05  # seconds: one click rings for 20 ms; a new onset needs this much quiet
# A colour's tone counts as sounding above this amplitude (the quietest moving object's ~0.045).
TONE_THRESHOLD = 0.015
SILENCE_RMS = 0.01  # a frame whose audio RMS is below this is silent (a tone at 0.015 is 0.011)


def _check(audio) -> np.ndarray:
  audio = np.asarray(audio, np.float64)
  if audio.ndim != 1:
    raise ValueError(f"audio must be a waveform [N], got shape {audio.shape}")
  return audio


def click_strength(audio) -> np.ndarray:
  """|x[n] - 2 x[n-1] + x[n-2]| float64 [N]: a causal second difference, which passes the
  clicks' 3 kHz band (gain ~1.2 at 16 kHz) and damps the tones below 1.1 kHz (gain <= 0.17),
  so a click starting at sample n0 rises exactly at n0."""
  audio = _check(audio)
  padded = np.concatenate([np.zeros(2), audio])
  return np.abs(padded[2:] - 2 * padded[1:-1] + padded[:-2])


def click_onsets(audio, sample_rate: int, *, threshold: float = CLICK_THRESHOLD,
                 min_gap: float = MIN_CLICK_GAP) -> np.ndarray:
  """Samples where clicks start, int64 [K] ascending: the first sample whose `click_strength`
  exceeds `threshold` after at least `min_gap` seconds below it."""
  loud = np.nonzero(click_strength(audio) > threshold)[0]
  if not loud.size:
    return loud.astype(np.int64)
  gap = int(round(min_gap * sample_rate))
  starts = [loud[0]] + [b for a, b in zip(loud[:-1], loud[1:]) if b - a > gap]
  return np.asarray(starts, np.int64)


def tone_amplitudes(audio, sample_rate: int) -> np.ndarray:
  """The amplitude of each colour's tone (`soundtrack.TONE_HZ`) over the clip, float64
  [num colours]: the Hann-windowed spectrum's peak within a quarter tone of the pitch, scaled
  so a steady sinusoid of amplitude a reads a (clicks, broadband, add little). Zero-padded 4x,
  so a pitch between two bins loses < 1 % (Hann's scalloping loss is 15 % unpadded)."""
  audio = _check(audio)
  window = np.hanning(len(audio))
  size = 4 * len(audio)
  spectrum = np.abs(np.fft.rfft(audio * window, n=size)) * 2.0 / window.sum()
  freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
  out = []
  for hz in soundtrack.TONE_HZ:
    near = np.abs(np.log2(freqs[1:] / hz)) <= 1 / 24  # within a quarter tone
    out.append(spectrum[1:][near].max() if near.any() else 0.0)
  return np.asarray(out)


def sounding_colors(audio, sample_rate: int, *, threshold: float = TONE_THRESHOLD) -> set[int]:
  """Colour indices whose tone amplitude is above `threshold`."""
  return {int(c) for c in np.nonzero(tone_amplitudes(audio, sample_rate) > threshold)[0]}


def frame_rms(audio, sample_rate: int, fps: int) -> np.ndarray:
  """RMS of each video frame's samples, float64 [T] (a last partial frame is dropped)."""
  audio = _check(audio)
  spf = soundtrack.samples_per_frame(sample_rate, fps)
  frames = len(audio) // spf
  return np.sqrt(np.mean(audio[:frames * spf].reshape(frames, spf) ** 2, axis=1))


def event_train(times, length: int, rate: float) -> np.ndarray:
  """Impulses float64 [length] at `times` (seconds) sampled at `rate` per second (times outside
  are dropped): the form `offset_by_xcorr` compares."""
  train = np.zeros(length)
  idx = np.round(np.asarray(times, np.float64) * rate).astype(np.int64)
  np.add.at(train, idx[(idx >= 0) & (idx < length)], 1.0)
  return train


def offset_by_xcorr(visual, audible, rate: float, *, max_lag: float,
                    smooth: float = 0.01) -> float:
  """The delay (seconds; > 0: the sound comes late) that best aligns an audio envelope with a
  visual one, both float [L] sampled at `rate` per second: the lag in [-max_lag, max_lag]
  maximising their cross-correlation after both are smoothed by a Gaussian of `smooth` seconds
  (so near-misses still overlap). nan when either is all zero."""
  visual, audible = np.asarray(visual, np.float64), np.asarray(audible, np.float64)
  if visual.shape != audible.shape or visual.ndim != 1:
    raise ValueError(f"visual and audible must be [L] of one length, got {visual.shape} and "
                     f"{audible.shape}")
  if not visual.any() or not audible.any():
    return float("nan")
  sigma = max(smooth * rate, 1e-6)
  half = int(np.ceil(4 * sigma))
  kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
  v, a = (np.convolve(x, kernel, mode="same") for x in (visual, audible))
  lags = np.arange(-int(max_lag * rate), int(max_lag * rate) + 1)
  n = len(v)
  # score[lag] = sum_i v[i] a[i + lag]
  scores = [np.dot(v[max(0, -lag):n - max(0, lag)], a[max(0, lag):n - max(0, -lag)])
            for lag in lags]
  return float(lags[int(np.argmax(scores))] / rate)


def si_snr(estimate, reference) -> float:
  """Scale-invariant signal-to-noise ratio (dB) of estimate [N] against reference [N] (both
  mean-removed): 10 log10(|s|^2 / |e - s|^2) with s the projection of e on the reference. Phase
  sensitive, so a magnitude-only decoder scores low even when it sounds right."""
  e, r = _check(estimate), _check(reference)
  e, r = e - e.mean(), r - r.mean()
  target = np.dot(e, r) / max(np.dot(r, r), 1e-12) * r
  return float(10 * np.log10(max(np.dot(target, target), 1e-12)
                             / max(np.dot(e - target, e - target), 1e-12)))
