"""The soundtrack of a synthetic scene, derived from its ground truth: every sound is caused by
something visible at a known time.

  * a tone per moving object, its pitch set by the object's colour (`TONE_HZ`), its loudness by
    how fast the object moves (the speed of its fastest surface point, constant over a clip;
    amplitude grows as the square root of speed, so slow objects stay audible);
  * a click when a bouncing object reflects off a wall of its box, starting at the sample of the
    reflection's exact (sub-frame) time;
  * silence when nothing moves (a still object makes no sound).

Objects of `vdm.data.scenes` pass through each other (the renderer has no physics), so the only
impacts are the wall reflections of the 'bounce' motion. Sound is physical: it follows the
objects in the world, not the camera (a panning camera over a still object stays silent).

Time: frame t of a clip is shown from t / fps seconds for 1 / fps seconds, so a clip of T frames
has T * sample_rate / fps samples, and an event at (fractional) frame time e sounds at sample
round(e * sample_rate / fps). Pure numpy and deterministic (no random numbers at all).
"""
from __future__ import annotations

import numpy as np

from vdm.data import scenes

SAMPLE_RATE = 16_000
# Pitch per scenes colour (index into scenes.COLORS): three semitones apart from A3, so
# neighbouring colours are >= 40 Hz apart (more than a bin of a 500-point STFT at 16 kHz).
TONE_HZ = tuple(220.0 * 2.0 ** (3 * k / 12) for k in range(len(scenes.COLORS)))
# Words for a pitch in captions: colours 0-3 low, 4-6 middle, 7-9 high.
PITCH_WORDS = ("low", "low", "low", "low", "middle", "middle", "middle", "high", "high", "high")
TONE_AMPLITUDE = 0.15    # of a tone at full loudness (three objects and a click stay below 1)
FULL_SPEED = 0.1         # surface speed, as a fraction of the short side per frame, at full loudness
CLICK_HZ = 3_000.0       # above every tone, so a high-pass band holds the clicks alone
CLICK_DECAY = 0.003      # seconds (e-folding) of a click
CLICK_SECONDS = 0.02     # a click's length
CLICK_AMPLITUDE = 0.4
# Clicks per clip a dataset reserves room for (padded with -1), per training length of frames:
# a bounce path is at most ~4 box spans per training clip per axis, so <= 10 per object.
EVENT_SLOTS = 32


def samples_per_frame(sample_rate: int, fps: int) -> int:
  """Audio samples per video frame; raises unless the sample rate is a multiple of fps."""
  if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0 or sample_rate % fps:
    raise ValueError(f"sample_rate must be a positive multiple of fps={fps} (whole samples per "
                     f"frame), got {sample_rate!r}")
  return int(sample_rate // fps)


def object_speed(obj: scenes.ObjectSpec) -> float:
  """World pixels per frame of the object's fastest surface point (constant over a clip): the
  centre's speed plus what spinning (spin x radius) and growing (growth) add."""
  name = scenes.MOTIONS[obj.motion]
  centre = 0.0
  if name in scenes.MOTION_VECTORS or name == "bounce":
    centre = float(np.hypot(*obj.velocity))
  elif name == "circle":
    centre = abs(obj.orbit[3]) * obj.orbit[2]
  return centre + abs(obj.spin) * obj.radius + abs(obj.growth)


def loudness(scene: scenes.Scene) -> np.ndarray:
  """Tone amplitude per object float32 [MAX_OBJECTS]: TONE_AMPLITUDE * sqrt(speed / full
  speed), capped at TONE_AMPLITUDE; 0 for still and absent objects."""
  out = np.zeros(scenes.MAX_OBJECTS, np.float32)
  full = FULL_SPEED * min(scene.height, scene.width)
  for k, obj in enumerate(scene.objects):
    out[k] = TONE_AMPLITUDE * np.sqrt(min(object_speed(obj) / full, 1.0))
  return out


def bounce_events(scene: scenes.Scene) -> list[tuple[float, int]]:
  """(frame time, object) of every wall reflection in (0, T - 1], sorted by time.

  A bouncing centre moves along an unfolded line u(t) = start + v t and is reflected between
  lo and hi (`scenes._triangle_wave`): it touches a wall whenever u - lo is a multiple of the
  span hi - lo, so the reflections of each axis are at t = (lo + m span - start) / v exactly.
  """
  events = []
  last = scene.frames - 1
  for k, obj in enumerate(scene.objects):
    if scenes.MOTIONS[obj.motion] != "bounce":
      continue
    for axis in (0, 1):
      lo, hi = obj.bounds[2 * axis], obj.bounds[2 * axis + 1]
      v, u0 = obj.velocity[axis], obj.start[axis] - lo
      span = hi - lo
      if span <= 0 or v == 0:
        continue
      u1 = u0 + v * last  # where the unfolded coordinate ends
      lo_m, hi_m = (u0, u1) if v > 0 else (u1, u0)
      for m in range(int(np.floor(lo_m / span)), int(np.ceil(hi_m / span)) + 1):
        t = (m * span - u0) / v
        if 0.0 < t <= last:
          events.append((float(t), k))
  return sorted(events)


def click(sample_rate: int) -> np.ndarray:
  """One click float64 [CLICK_SECONDS * sample_rate]: a damped cosine at CLICK_HZ that starts at
  its full amplitude, so its onset is its first sample."""
  n = np.arange(int(round(CLICK_SECONDS * sample_rate)))
  return (CLICK_AMPLITUDE * np.cos(2 * np.pi * CLICK_HZ * n / sample_rate)
          * np.exp(-n / (CLICK_DECAY * sample_rate)))


def event_sample(frame_time: float, sample_rate: int, fps: int) -> int:
  """The sample an event at (fractional) frame time `frame_time` sounds at."""
  return int(np.round(frame_time * sample_rate / fps))


def render_soundtrack(scene: scenes.Scene, *, sample_rate: int = SAMPLE_RATE,
                      fps: int = 8) -> tuple[np.ndarray, dict]:
  """The scene's soundtrack and its ground truth.

  Returns (audio float32 [T * sample_rate / fps] in [-1, 1], truth) with truth:
    loudness float32 [K] tone amplitude per object (0 when still or absent);
    tone_hz float32 [K] its pitch (0 where absent);
    event_frame float32 [E] frame times of the clicks, event_object int32 [E] which object
      (E = len(bounce_events(scene))).
  """
  spf = samples_per_frame(sample_rate, fps)
  n = scene.frames * spf
  time = np.arange(n, dtype=np.float64) / sample_rate
  audio = np.zeros(n, np.float64)
  amplitude = loudness(scene)
  tone_hz = np.zeros(scenes.MAX_OBJECTS, np.float32)
  for k, obj in enumerate(scene.objects):
    tone_hz[k] = TONE_HZ[obj.color]
    if amplitude[k] > 0:
      audio += amplitude[k] * np.sin(2 * np.pi * TONE_HZ[obj.color] * time)
  events = bounce_events(scene)
  burst = click(sample_rate)
  for frame_time, _ in events:
    start = event_sample(frame_time, sample_rate, fps)
    stop = min(n, start + len(burst))
    audio[start:stop] += burst[:stop - start]
  truth = dict(loudness=amplitude, tone_hz=tone_hz,
               event_frame=np.array([e for e, _ in events], np.float32),
               event_object=np.array([k for _, k in events], np.int32))
  return np.clip(audio, -1.0, 1.0).astype(np.float32), truth


def sound_caption(scene: scenes.Scene) -> str:
  """What the soundtrack says in words: 'with a low hum and clicks', 'with a low and a high
  hum', 'with a low, a middle and a high hum', or 'in silence' (pitches low to high)."""
  amplitude = loudness(scene)
  heard = {PITCH_WORDS[o.color] for k, o in enumerate(scene.objects) if amplitude[k] > 0}
  if not heard:
    return "in silence"
  words = [f"a {w}" for w in ("low", "middle", "high") if w in heard]
  hum = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
  return f"with {hum} hum" + (" and clicks" if bounce_events(scene) else "")


def pad_events(truth: dict, slots: int) -> dict:
  """The event arrays of `render_soundtrack`'s truth padded to `slots` entries (frame -1, object
  -1), so every clip of a split stores the same shape; raises if a clip has more events."""
  count = len(truth["event_frame"])
  if count > slots:
    raise ValueError(f"a clip has {count} sound events, more than the {slots} slots reserved")
  pad = slots - count
  return dict(truth, event_frame=np.pad(truth["event_frame"], (0, pad), constant_values=-1.0),
              event_object=np.pad(truth["event_object"], (0, pad), constant_values=-1))


def to_pcm16(audio: np.ndarray) -> np.ndarray:
  """float audio in [-1, 1] -> int16 PCM (how datasets and .wav files store it)."""
  return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 in [-1, 1]."""
  return np.asarray(pcm, np.float32) / 32767.0
