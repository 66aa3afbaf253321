"""The measures of `vdm eval av-sync` (run by vdm.eval.run.run_av_sync): is the sound in sync with
the picture? Judged from the generated pair alone, with the data's own ground-truth logic run on
the frames.

  visual events  each object is tracked by its palette colour (a still camera over a solid
                 background: `sound_scenes`), and a bounce is where its centre's velocity along
                 x or y reverses; its time is where the straight paths into and out of the wall
                 meet (sub-frame), as the soundtrack's clicks are placed (vdm.data.soundtrack);
  audio events   click onsets (vdm.eval.metrics.audio.click_onsets).

Measured per clip and summarised over clips:
  onset error     ms from each visual bounce to the nearest click (median over all bounces;
                  'missed': bounces with no click within two frames);
  pitch accuracy  the strongest tone's colour is the colour of an object seen moving;
  silence when still  frames in which no object moves whose audio is silent (RMS);
  A/V offset      the lag maximising the cross-correlation of the bounce and click trains
                  (> 0: the sound comes late); |offset| median over clips with bounces.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vdm.data import scenes
from vdm.data import soundtrack
from vdm.eval.metrics import audio as audio_metrics

MIN_SPEED = 0.3      # px/frame: slower centre motion reads as still (jitter of a blurry render)
MIN_PIXELS = 3       # an object smaller than this in a frame is not found there
MISS_FRAMES = 2.0    # a bounce with no click within this many frames is missed
MAX_LAG = 0.5        # seconds searched for the A/V offset
GENERATED_CLICK_THRESHOLD = 0.1  # generated clicks are softer than the data's (Griffin-Lim)
_PALETTE = scenes.PALETTE.astype(np.float64)


def color_map(video: np.ndarray) -> tuple[np.ndarray, int]:
  """(nearest palette colour of every pixel int [T, H, W], the background's colour: the
  commonest one)."""
  distance = np.linalg.norm(video[..., None, :].astype(np.float64) - _PALETTE, axis=-1)
  nearest = np.argmin(distance, axis=-1)
  return nearest, int(np.bincount(nearest.ravel(), minlength=len(_PALETTE)).argmax())


def track_objects(video: np.ndarray) -> dict[int, np.ndarray]:
  """Centre of each object colour per frame: {colour: float [T, 2] (x, y), nan where absent}.

  video uint8 [T, H, W, 3] over a solid background. A colour counts as an object when its largest
  blob reaches MIN_PIXELS in at least half the frames and a quarter of the biggest object's size
  (blurred edges between two colours can look like a thin third colour)."""
  nearest, background = color_map(video)
  tracks, sizes = {}, {}
  for color in range(len(_PALETTE)):
    if color == background:
      continue
    centers, area = np.full((len(video), 2), np.nan), []
    for t, frame in enumerate(nearest == color):
      labels, count = ndimage.label(frame)
      if not count:
        continue
      blob = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
      if blob.sum() >= MIN_PIXELS:
        ys, xs = np.nonzero(blob)
        centers[t] = xs.mean(), ys.mean()
        area.append(blob.sum())
    if len(area) >= len(video) / 2:
      tracks[color], sizes[color] = centers, float(np.median(area))
  biggest = max(sizes.values(), default=0.0)
  return {c: tracks[c] for c in tracks if sizes[c] >= 0.25 * biggest}


def bounce_times(center: np.ndarray, *, min_speed: float = MIN_SPEED) -> np.ndarray:
  """Fractional frame times float64 [E] of the reflections of a centre path float [T, 2]: where
  the velocity along x or y reverses, timed where the path in (the step before the reversal)
  and the path out (the step after) meet. Only an axis the centre moves along counts (median
  step above min_speed), and a reversal must hold for the steps around it where they exist, so a
  blob's centroid jitter is not a bounce. Reflections of x and y within half a frame are one
  event (a corner)."""
  c = np.asarray(center, np.float64)
  times = []
  for axis in (0, 1):
    d = np.diff(c[:, axis])
    speed = np.nanmedian(np.abs(d)) if np.isfinite(d).any() else 0.0
    if not speed > min_speed:
      continue
    for t in range(1, len(d)):
      a, b = d[t - 1], d[t]
      if not (np.isfinite(a) and np.isfinite(b)) or np.sign(a) == np.sign(b):
        continue
      # A step that straddles the wall is short; the steps one further out are clean.
      before = d[t - 2] if t >= 2 else a
      after = d[t + 1] if t + 1 < len(d) else b
      if not (np.sign(before) == np.sign(a) and np.sign(after) == np.sign(b)
              and min(abs(before), abs(after)) > 0.5 * speed):
        continue
      # Into the wall at `before` from frame t - 1, out of it at `after` to frame t + 1.
      tau = (c[t + 1, axis] - c[t - 1, axis] - after * (t + 1) + before * (t - 1)) / (
          before - after)
      times.append(float(np.clip(tau, t - 1, t + 1)))
  times.sort()
  merged = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 0.5]
  return np.asarray(merged)


def moving_frames(tracks: dict[int, np.ndarray], frames: int,
                  min_speed: float = MIN_SPEED) -> np.ndarray:
  """bool [T]: some object's centre moves faster than min_speed into or out of the frame."""
  moving = np.zeros(frames, bool)
  for center in tracks.values():
    speed = np.linalg.norm(np.diff(center, axis=0), axis=-1)
    fast = np.nan_to_num(speed, nan=0.0) > min_speed
    moving[1:] |= fast
    moving[:-1] |= fast
  return moving


def score_clip(video: np.ndarray, audio: np.ndarray, sample_rate: int, fps: int, *,
               click_threshold: float = audio_metrics.CLICK_THRESHOLD) -> dict:
  """Sync measures of one clip: video uint8 [T, H, W, 3], audio float [T * sample_rate / fps].

  Returns dict(event_ms: visual bounce times (ms), onset_ms: click onsets (ms), errors_ms: per
  bounce the distance to the nearest click (inf if there is none), moving_colors, pitch_color
  (the strongest tone's colour; -1 when no tone sounds), pitch_ok (None when nothing moves),
  still_frames, silent_still_frames, offset_ms (nan without bounces or clicks))."""
  video, audio = np.asarray(video), np.asarray(audio, np.float64)
  frames = len(video)
  if len(audio) != frames * soundtrack.samples_per_frame(sample_rate, fps):
    raise ValueError(f"audio has {len(audio)} samples; {frames} frames at {fps} fps need "
                     f"{frames * sample_rate // fps}")
  tracks = track_objects(video)
  events = np.sort(np.concatenate([bounce_times(c) for c in tracks.values()] or [np.zeros(0)]))
  event_s = events / fps
  onsets = audio_metrics.click_onsets(audio, sample_rate, threshold=click_threshold)
  onset_s = onsets / sample_rate
  errors = (np.abs(event_s[:, None] - onset_s[None, :]).min(axis=1) if onset_s.size
            else np.full(len(event_s), np.inf))
  moving = {c for c, center in tracks.items()
            if np.nanmax(np.linalg.norm(np.diff(center, axis=0), axis=-1), initial=0.0)
            > MIN_SPEED}
  tones = audio_metrics.tone_amplitudes(audio, sample_rate)
  pitch = int(np.argmax(tones)) if tones.max() > audio_metrics.TONE_THRESHOLD else -1
  still = ~moving_frames(tracks, frames)
  rms = audio_metrics.frame_rms(audio, sample_rate, fps)
  rate = 1000.0  # the event trains' sampling, per second
  length = int(np.ceil(len(audio) / sample_rate * rate))
  offset = audio_metrics.offset_by_xcorr(
      audio_metrics.event_train(event_s, length, rate),
      audio_metrics.event_train(onset_s, length, rate), rate, max_lag=MAX_LAG)
  return dict(event_ms=(event_s * 1000).tolist(), onset_ms=(onset_s * 1000).tolist(),
              errors_ms=(errors * 1000).tolist(), moving_colors=sorted(moving),
              pitch_color=pitch, pitch_ok=(pitch in moving) if moving else None,
              still_frames=int(still.sum()),
              silent_still_frames=int((still & (rms < audio_metrics.SILENCE_RMS)).sum()),
              offset_ms=offset * 1000)


def summarize(rows: list[dict], fps: int) -> dict:
  """Over clips: median onset error (ms, misses as inf), missed fraction, pitch accuracy,
  silence-when-still rate, median |A/V offset| (ms), and the counts behind them."""
  errors = np.asarray([e for r in rows for e in r["errors_ms"]], np.float64)
  pitch = [r["pitch_ok"] for r in rows if r["pitch_ok"] is not None]
  still = sum(r["still_frames"] for r in rows)
  offsets = np.asarray([abs(r["offset_ms"]) for r in rows if np.isfinite(r["offset_ms"])])
  return dict(
      n=len(rows), bounces=int(errors.size),
      median_onset_error_ms=float(np.median(errors)) if errors.size else float("nan"),
      missed=float(np.mean(errors > MISS_FRAMES * 1000.0 / fps)) if errors.size else float("nan"),
      pitch_clips=len(pitch), pitch_accuracy=float(np.mean(pitch)) if pitch else float("nan"),
      still_frames=still,
      silence_when_still=(sum(r["silent_still_frames"] for r in rows) / still if still
                          else float("nan")),
      offset_clips=int(offsets.size),
      median_abs_offset_ms=float(np.median(offsets)) if offsets.size else float("nan"))


def shift_audio(audio: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
  """The soundtrack delayed by `seconds` (> 0: later, silence in front; < 0: earlier), same
  length: the test of the offset measure."""
  n = int(round(seconds * sample_rate))
  audio = np.asarray(audio)
  if n >= 0:
    return np.concatenate([np.zeros(n, audio.dtype), audio[:len(audio) - n]])
  return np.concatenate([audio[-n:], np.zeros(-n, audio.dtype)])


def audio_reconstruction(audio_vae, examples: list[dict], sample_rate: int, fps: int, *,
                         iterations: int = 64) -> dict:
  """How well the audio VAE keeps a soundtrack (means over `examples`, dataset clips with
  'audio'): spectral error (dB, bins within 40 dB of the loudest), SI-SNR (dB; phase-sensitive),
  click onsets (median ms from each true click to the nearest decoded one, and the fraction
  found within one frame) and pitch (the strongest tone's colour kept)."""
  import jax
  import jax.numpy as jnp
  from vdm.audio import spectrogram
  encode_decode = jax.jit(lambda x: audio_vae.decode_audio(audio_vae.encode_audio(x)[0],
                                                           iterations=iterations))
  spectral, snr, onset_ms, pitch = [], [], [], []
  for example in examples:
    audio = soundtrack.from_pcm16(example["audio"])
    decoded = np.asarray(encode_decode(jnp.asarray(audio)[None]))[0]
    want, got = (np.asarray(spectrogram.features(jnp.asarray(x), audio_vae.n_fft, audio_vae.hop))
                 for x in (audio, decoded))
    audible = want >= want.max() - 40.0 / (-spectrogram.FLOOR_DB / 2.0)
    spectral.append(float(np.abs(got - want)[audible].mean() * (-spectrogram.FLOOR_DB / 2.0)))
    if np.any(audio):
      snr.append(audio_metrics.si_snr(decoded, audio))
    true_on = audio_metrics.click_onsets(audio, sample_rate)
    got_on = audio_metrics.click_onsets(decoded, sample_rate,
                                        threshold=GENERATED_CLICK_THRESHOLD)
    onset_ms += [float(np.abs(got_on - t).min() / sample_rate * 1000) if got_on.size
                 else float("inf") for t in true_on]
    tones = audio_metrics.tone_amplitudes(audio, sample_rate)
    if tones.max() > audio_metrics.TONE_THRESHOLD:
      pitch.append(int(np.argmax(audio_metrics.tone_amplitudes(decoded, sample_rate)))
                   == int(np.argmax(tones)))
  onsets = np.asarray(onset_ms)
  return dict(clips=len(examples), spectral_error_db=float(np.mean(spectral)),
              si_snr_db=float(np.mean(snr)) if snr else float("nan"), clicks=int(onsets.size),
              median_click_error_ms=float(np.median(onsets)) if onsets.size else float("nan"),
              clicks_within_a_frame=(float(np.mean(onsets <= 1000.0 / fps)) if onsets.size
                                     else float("nan")),
              pitch_kept=float(np.mean(pitch)) if pitch else float("nan"))


# ---------------------------------------------------------------------------------------------
# The suite.

ROWS = ("ground_truth", "generated", "audio_for_true_video", "random_training_audio")
ROW_DOCS = dict(
    ground_truth="the test clips' own frames and soundtrack (the measures' own check)",
    generated="frames and sound generated together from the held-out caption",
    audio_for_true_video="sound generated for the test clip's true frames (video given)",
    random_training_audio="the generated frames with a random training clip's soundtrack "
                          "(the chance baseline)")


def dataset_examples(config, split: str, num: int, *, first: int = 0) -> list[dict]:
  """Clips `first`..`first + num` of a split of the config's sound dataset (scenes or
  sound_scenes with data.sample_rate > 0), regenerated from its seed."""
  from vdm.data import scene_examples
  d = config.data
  if d.kind not in ("scenes", "sound_scenes") or not d.sample_rate:
    raise ValueError(f"the av-sync suite needs a model trained on sound (data.kind scenes or "
                     f"sound_scenes with data.sample_rate > 0); this one has data.kind="
                     f"{d.kind!r}, data.sample_rate={d.sample_rate}")
  settings = scene_examples.SOUND_SCENES if d.kind == "sound_scenes" else {}
  return [scene_examples.make_example(d.seed, split, i, d.height, d.width, d.frames,
                                      max_objects=d.max_objects, sample_rate=d.sample_rate,
                                      fps=d.fps, **settings)
          for i in range(first, first + num)]


def table(summary: dict, fps: int) -> str:
  """The markdown table of a report's summary."""
  lines = ["| clips | median onset error (ms) | bounces missed | pitch-to-colour accuracy | "
           "silence when still | median abs A/V offset (ms) | bounces / clips |",
           "|---|---|---|---|---|---|---|"]
  for name, s in summary.items():
    lines.append(f"| {name.replace('_', ' ')} | {s['median_onset_error_ms']:.0f} | "
                 f"{s['missed']:.0%} | {s['pitch_accuracy']:.0%} ({s['pitch_clips']}) | "
                 f"{s['silence_when_still']:.0%} ({s['still_frames']} frames) | "
                 f"{s['median_abs_offset_ms']:.0f} ({s['offset_clips']}) | "
                 f"{s['bounces']} / {s['n']} |")
  lines.append(f"\nOne video frame is {1000 / fps:.0f} ms; a bounce is missed with no click "
               f"within {MISS_FRAMES:g} frames.")
  return "\n".join(lines) + "\n"
