"""The examples of the scenes dataset: a scene of `vdm.data.scenes` rendered to pixels and
ground truth, and captioned by `vdm.data.captions` in its short and long phrasing.

Apart from both so that the caption grammar can read the scene model without the scene model
needing the grammar.
"""
from __future__ import annotations

from typing import Iterator

from vdm.data import captions
from vdm.data import scenes


def make_example(seed: int, split: str, index: int, height: int, width: int, frames: int,
                 *, long_factor: int = 4, max_objects: int = scenes.MAX_OBJECTS,
                 backgrounds=scenes.BACKGROUNDS, cameras=scenes.CAMERAS) -> dict:
  """One example: 'video' uint8 [T, H, W, 3], 'caption' (short), 'caption_long', and the
  render_scene truth. The 'long' split has long_factor * frames frames."""
  length = frames * long_factor if split == "long" else frames
  scene = scenes.sample_scene(scenes.example_rng(seed, split, index), height, width, length,
                              split, motion_frames=frames, max_objects=max_objects,
                              backgrounds=backgrounds, cameras=cameras)
  video, truth = scenes.render_scene(scene)
  return dict(video=video, caption=captions.short_caption(scene),
              caption_long=captions.long_caption(scene), **truth)


def generate_examples(seed: int, split: str, num: int, height: int, width: int, frames: int,
                      **kwargs) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num); see make_example."""
  for i in range(num):
    yield i, make_example(seed, split, i, height, width, frames, **kwargs)
