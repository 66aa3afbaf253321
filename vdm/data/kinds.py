"""The data kinds `config.data.kind` names, as a registry: name -> how to build its dataset.

  simple        one coloured shape sliding over a flat background (vdm.data.simple; the
                spine's data); captions from a grammar, so text-only stages need no clips.
  scenes        1-3 objects, textures, camera motion, layered captions (vdm.data.scenes).
  sound_scenes  scenes made for sound, with their soundtrack (vdm.data.soundtrack): a still camera
                over a solid background, objects that bounce, slide or stand still.
  moving_mnist  bouncing MNIST digits (vdm.data.moving_mnist).
  photo_pans    real photos under a virtual hand-held camera (vdm.data.photo_pans).
  folder        a folder of the user's videos imported by `vdm data import` (vdm.data.importer).

Adding a kind is one `register_data_kind(DataKind(...))` with a builder function and the
config.data fields it reads (docs/add-a-data-kind.md).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class DataKind:
  """A dataset `config.data.kind` can name.

  build(fields, data_dir) -> a prepared TFDS builder, from the config.data `fields` it reads
    (only those present are passed, so a partial data dict falls back to the builder defaults).
  caption_corpus(seed, num, split) -> captions, for kinds whose captions can be drawn without
    building clips (the tokenizer and text pretraining then need no dataset on disk); None: the
    captions are read from the built dataset (`vdm.data.dataset_tokenizer.train_captions`).
  exact_flow: its clips carry what `vdm.data.simple.latent_motion` needs (shape, center,
    radius), so motion supervision can use the exact ground-truth flow.
  paths: its clips record every object's centre per frame ('center' [T, K, 2], 'present' [K])
    and the camera path ('camera' [T, 3]): what trajectory and camera control train on.
  audio: its clips can carry a soundtrack ('audio' int16 [T * data.sample_rate / data.fps]) when
    data.sample_rate > 0; audio_required: they always do (data.sample_rate must be > 0).
  """
  name: str
  doc: str
  fields: tuple[str, ...]
  build: Callable[[dict, str], Any]
  caption_corpus: Callable[[int, int, str], list[str]] | None = None
  exact_flow: bool = False
  paths: bool = False
  audio: bool = False
  audio_required: bool = False


DATA_KINDS: dict[str, DataKind] = {}


def register_data_kind(kind: DataKind) -> DataKind:
  """Adds a kind to the registry (config validation, `vdm train` and the docs read it)."""
  DATA_KINDS[kind.name] = kind
  return kind


def frame_size(data) -> tuple[int, int]:
  """(height, width) of a config.data: t2v configs name it directly; the upscaler's configs
  (configs/sr.py) by aspect and short side, which is why this one reads which fields exist."""
  if "short_side" in data:
    from vdm.data.aspect_ratios import aspect_size
    return aspect_size(data["aspect"], data["short_side"])
  return data["height"], data["width"]


def build(data, data_dir: str):
  """The prepared dataset of a config.data (ConfigDict or dict) under data_dir."""
  name = data["kind"] if "kind" in data else "simple"
  if name not in DATA_KINDS:
    raise ValueError(f"config.data.kind must be one of {tuple(DATA_KINDS)}, got {name!r}")
  kind = DATA_KINDS[name]
  fields = {k: data[k] for k in kind.fields if k in data}
  if "height" in kind.fields and ("short_side" in data or "height" in data):
    fields["height"], fields["width"] = frame_size(data)
  return kind.build(fields, data_dir)


def _simple(fields, data_dir):
  from vdm.data import simple_builder
  return simple_builder.prepare(data_dir, **fields)


def _simple_corpus(seed, num, split):
  from vdm.data import simple
  return simple.caption_corpus(seed, num, split=split)


def _scenes(fields, data_dir):
  from vdm.data import scenes_builder
  return scenes_builder.prepare(scenes_builder.make_scenes_builder(data_dir, **fields))


def _sound_scenes(fields, data_dir):
  from vdm.data import scenes_builder
  return scenes_builder.prepare(scenes_builder.make_scenes_builder(data_dir, sound_scenes=True,
                                                                   **fields))


def _photo_pans(fields, data_dir):
  from vdm.data import scenes_builder
  return scenes_builder.prepare(scenes_builder.make_photo_pans_builder(data_dir, **fields))


def _moving_mnist(fields, data_dir):
  from vdm.data import scenes_builder
  if "height" in fields:  # a training config names the frame size as height and width
    height, width = fields.pop("height"), fields.pop("width")
    if width != height:
      raise ValueError(f"moving_mnist frames are square: data.height={height}, "
                       f"data.width={width} must agree")
    fields["size"] = height
  return scenes_builder.prepare(scenes_builder.make_moving_mnist_builder(data_dir, **fields))


def _folder(fields, data_dir):
  from vdm.data import importer
  name = fields["name"]
  # A training config names its clip size; the bucket of that size is what it trains on.
  sized = all(k in fields for k in ("height", "width", "frames"))
  bucket = f"{fields['height']}x{fields['width']}_t{fields['frames']}" if sized else ""
  builder = importer.load_builder(data_dir, name, train_split=bucket)
  if not builder.is_prepared():
    raise ValueError(f"data.name={name!r}: no dataset imported under {data_dir!r} (run "
                     f"`vdm data import DIR --out {name} --data-dir {data_dir}`)")
  if sized:
    builder.as_data_source()  # a size no bucket has fails here, naming the buckets there are
  return builder


_COMMON = ("frames", "fps", "num_train", "num_test", "seed")
register_data_kind(DataKind(
    "simple", "one coloured shape sliding over a flat background (the spine's data)",
    ("height", "width", "wrap") + _COMMON, _simple, caption_corpus=_simple_corpus,
    exact_flow=True))
_SCENES = ("height", "width", "long_factor", "max_objects", "num_long", "sample_rate") + _COMMON
register_data_kind(DataKind(
    "scenes", "1-3 objects, textured backgrounds, camera motion, layered captions (with "
    "data.sample_rate > 0 also a soundtrack)", _SCENES, _scenes, paths=True, audio=True))
register_data_kind(DataKind(
    "sound_scenes", "scenes made for sound, with their soundtrack (clicks at bounces, a tone per "
    "moving object pitched by its colour, silence when still): a still camera, a solid "
    "background", _SCENES, _sound_scenes, paths=True, audio=True, audio_required=True))
register_data_kind(DataKind(
    "moving_mnist", "bouncing MNIST digits (the classic 64x64, 2 digits, 20 frames)",
    ("height", "width", "size", "num_digits") + _COMMON, _moving_mnist))
register_data_kind(DataKind(
    "photo_pans", "real photos under a virtual hand-held camera (natural-image clips)",
    ("height", "width") + _COMMON, _photo_pans))
register_data_kind(DataKind(
    "folder", "a folder of your videos imported by `vdm data import DIR --out NAME` (a training "
    "config trains on the bucket of its data.height x data.width, data.frames)",
    ("name", "height", "width", "frames"), _folder))
