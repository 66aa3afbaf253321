"""The examples of the scenes dataset: a scene of `vdm.data.scenes` rendered to pixels and
ground truth, and captioned by `vdm.data.captions` in its short and long phrasing; with a
sample rate, also its soundtrack (`vdm.data.soundtrack`), which the captions then describe.

Apart from both so that the caption grammar can read the scene model without the scene model
needing the grammar.
"""
from __future__ import annotations

import math
from typing import Iterator

from vdm.data import captions
from vdm.data import scenes
from vdm.data import soundtrack

# The scenes made for sound (data.kind 'sound_scenes'): a still camera over a solid background,
# so every sound has a visible cause that nothing else moves with; objects bounce (the clicks),
# slide (a steady tone) or stand still (silence). Bounce is listed three times: drawn 3 in 8.
SOUND_SCENES = dict(cameras=("static",), backgrounds=("solid",),
                    motions=("still", "bounce", "bounce", "bounce", "left", "right", "up",
                             "down"))


def event_slots(frames: int, training_frames: int) -> int:
  """Sound-event slots of a clip of `frames` frames whose motion is calibrated on
  `training_frames` (the 'long' split's clips are several training lengths long)."""
  return soundtrack.EVENT_SLOTS * math.ceil(frames / training_frames)


def make_example(seed: int, split: str, index: int, height: int, width: int, frames: int,
                 *, long_factor: int = 4, max_objects: int = scenes.MAX_OBJECTS,
                 backgrounds=scenes.BACKGROUNDS, cameras=scenes.CAMERAS,
                 motions=scenes.MOTIONS, sample_rate: int = 0, fps: int = 8) -> dict:
  """One example: 'video' uint8 [T, H, W, 3], 'caption' (short), 'caption_long', and the
  render_scene truth. The 'long' split has long_factor * frames frames.

  sample_rate > 0 adds the soundtrack: 'audio' int16 [T * sample_rate / fps] and its truth
  (`soundtrack.render_soundtrack`, events padded to `event_slots` with -1), and the captions
  end with what it sounds like (', with a low hum and clicks' / ', in silence')."""
  length = frames * long_factor if split == "long" else frames
  scene = scenes.sample_scene(scenes.example_rng(seed, split, index), height, width, length,
                              split, motion_frames=frames, max_objects=max_objects,
                              backgrounds=backgrounds, cameras=cameras, motions=motions)
  video, truth = scenes.render_scene(scene)
  example = dict(video=video, caption=captions.short_caption(scene),
                 caption_long=captions.long_caption(scene), **truth)
  if sample_rate:
    audio, sound = soundtrack.render_soundtrack(scene, sample_rate=sample_rate, fps=fps)
    words = soundtrack.sound_caption(scene)
    example.update(audio=soundtrack.to_pcm16(audio),
                   **soundtrack.pad_events(sound, event_slots(length, frames)),
                   caption=f"{example['caption']}, {words}",
                   caption_long=f"{example['caption_long']} It plays {words}.")
  return example


def generate_examples(seed: int, split: str, num: int, height: int, width: int, frames: int,
                      **kwargs) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num); see make_example."""
  for i in range(num):
    yield i, make_example(seed, split, i, height, width, frames, **kwargs)
