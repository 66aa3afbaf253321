"""TFDS builders (array_record, no TensorFlow) for the synthetic benchmark and Moving MNIST.

  SceneVideos:  vdm.data.scenes clips, splits 'train', 'test' (held-out compositions) and 'long'
                (long_factor x the training length; its frame axis is stored with shape None);
                with a sample rate, each clip's soundtrack beside its frames (int16 'audio' and
                its truth, vdm.data.soundtrack); sound_scenes draws the scenes made for sound
                (vdm.data.scene_examples.SOUND_SCENES).
  MovingMnist:  vdm.data.moving_mnist, the classic 64x64, 2 digits, 20 frames by default.
  PhotoPans:    vdm.data.photo_pans, a hand-held camera over real photos (natural-image clips).

Configs are built on demand from their parameters (`make_scenes_builder`,
`make_moving_mnist_builder`, `make_photo_pans_builder`; `vdm.data.kinds.build` picks one by
`config.data.kind`); every parameter is in the config name, so two settings never share a folder.
"""
from __future__ import annotations

import dataclasses

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from vdm.data import moving_mnist
from vdm.data import photo_pans
from vdm.data import scene_examples
from vdm.data import scenes
from vdm.data import soundtrack
from vdm.data.aspect_ratios import aspect_size



@dataclasses.dataclass(eq=False)
class SceneVideosConfig(tfds.core.BuilderConfig):
  height: int = 64
  width: int = 64
  frames: int = 16
  fps: int = 8
  long_factor: int = 4
  max_objects: int = 3
  num_train: int = 1024
  num_test: int = 128
  num_long: int = 32
  seed: int = 0
  sample_rate: int = 0  # 0: no soundtrack
  sound_scenes: bool = False


def _tensor(shape, dtype, zlib=False):
  return tfds.features.Tensor(shape=shape, dtype=dtype,
                              encoding=tfds.features.Encoding.ZLIB if zlib else
                              tfds.features.Encoding.NONE)


class _NoTfBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared settings: source folder named explicitly (see simple_builder.SimpleVideos), and
  splits generated from the seed, `num_<split>` examples each (a split of 0 is left out)."""
  code_path = epath.Path(__file__)
  pkg_dir_path = epath.Path(__file__).parent
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  SPLITS = ("train", "test")

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: every clip is generated from the seed.
    c = self.builder_config
    return {split: self._generate_examples(split, getattr(c, f"num_{split}"))
            for split in self.SPLITS if getattr(c, f"num_{split}") > 0}


class SceneVideos(_NoTfBuilder):
  """1-3 objects, backgrounds, camera motion, short/long captions and exact ground truth."""

  BUILDER_CONFIGS = [SceneVideosConfig(name="default")]
  SPLITS = ("train", "test", "long")

  def _info(self) -> tfds.core.DatasetInfo:
    c, K = self.builder_config, scenes.MAX_OBJECTS
    i32, f32 = np.int32, np.float32
    sound = {}
    if c.sample_rate:  # the frame and event axes are None: the 'long' split is longer
      sound = {"audio": _tensor((None,), np.int16, zlib=True),
               "loudness": _tensor((K,), f32), "tone_hz": _tensor((K,), f32),
               "event_frame": _tensor((None,), f32), "event_object": _tensor((None,), i32)}
    return self.dataset_info_from_configs(
        description=scenes.__doc__,
        features=tfds.features.FeaturesDict({
            "video": _tensor((None, c.height, c.width, 3), np.uint8, zlib=True),
            "segmentation": _tensor((None, c.height, c.width), np.uint8, zlib=True),
            "caption": tfds.features.Text(),
            "caption_long": tfds.features.Text(),
            "center": _tensor((None, K, 2), f32), "radius": _tensor((None, K), f32),
            "angle": _tensor((None, K), f32), "box": _tensor((None, K, 4), f32),
            "visible": _tensor((None, K), np.bool_), "present": _tensor((K,), np.bool_),
            "camera": _tensor((None, 3), f32),
            **{k: _tensor((K,), i32) for k in ("color", "shape", "motion", "speed", "digit",
                                                "digit_label", "draw_order")},
            **{k: _tensor((), i32) for k in ("background", "bg_color_a", "bg_color_b",
                                              "texture", "camera_kind")},
            **sound,
        }),
        metadata=tfds.core.MetadataDict(fps=c.fps, long_frames=c.frames * c.long_factor,
                                        sample_rate=c.sample_rate),
        disable_shuffling=True,  # record i of a split is example i; grain shuffles at read time
    )

  def _generate_examples(self, split: str, num: int):
    c = self.builder_config
    yield from scene_examples.generate_examples(
        c.seed, split, num, c.height, c.width, c.frames, long_factor=c.long_factor,
        max_objects=c.max_objects, sample_rate=c.sample_rate, fps=c.fps,
        **(scene_examples.SOUND_SCENES if c.sound_scenes else {}))


@dataclasses.dataclass(eq=False)
class MovingMnistConfig(tfds.core.BuilderConfig):
  size: int = 64
  frames: int = 20
  num_digits: int = 2
  fps: int = 10
  num_train: int = 10000
  num_test: int = 1000
  seed: int = 0


class MovingMnist(_NoTfBuilder):
  """Moving MNIST (classic setting by default) with captions and digit positions."""

  BUILDER_CONFIGS = [MovingMnistConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    n = c.num_digits
    return self.dataset_info_from_configs(
        description=moving_mnist.__doc__,
        features=tfds.features.FeaturesDict({
            "video": _tensor((c.frames, c.size, c.size, 3), np.uint8, zlib=True),
            "caption": tfds.features.Text(),
            "corner": _tensor((c.frames, n, 2), np.int32),
            "center": _tensor((c.frames, n, 2), np.float32),
            "digit": _tensor((n,), np.int32), "digit_label": _tensor((n,), np.int32),
        }),
        metadata=tfds.core.MetadataDict(fps=c.fps),
        disable_shuffling=True,
    )

  def _generate_examples(self, split: str, num: int):
    c = self.builder_config
    yield from moving_mnist.generate_examples(c.seed, split, num, size=c.size, frames=c.frames,
                                              num_digits=c.num_digits)


@dataclasses.dataclass(eq=False)
class PhotoPansConfig(tfds.core.BuilderConfig):
  height: int = 64
  width: int = 64
  frames: int = 8
  fps: int = 8
  num_train: int = 1024
  num_test: int = 64
  seed: int = 0


class PhotoPans(_NoTfBuilder):
  """Natural-image clips: real photos filmed by a virtual hand-held camera, with its path."""

  BUILDER_CONFIGS = [PhotoPansConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    f32 = np.float32
    return self.dataset_info_from_configs(
        description=photo_pans.__doc__,
        features=tfds.features.FeaturesDict({
            "video": _tensor((c.frames, c.height, c.width, 3), np.uint8, zlib=True),
            "caption": tfds.features.Text(),
            "photo": _tensor((), np.int32), "scale": _tensor((), f32),
            "shift": _tensor((c.frames, 2), f32), "zoom": _tensor((c.frames,), f32),
            "roll": _tensor((c.frames,), f32),
        }),
        metadata=tfds.core.MetadataDict(fps=c.fps),
        disable_shuffling=True,
    )

  def _generate_examples(self, split: str, num: int):
    c = self.builder_config
    yield from photo_pans.generate_examples(c.seed, split, num, height=c.height, width=c.width,
                                            frames=c.frames)


def _check_ints(params: dict, minimum: dict) -> None:
  for key, value in params.items():
    low = minimum.get(key, 1)
    if not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{key} must be an int >= {low}, got {value!r}")


def _name(params: dict) -> str:
  return "_".join(f"{k}{v}" for k, v in params.items())


def make_scenes_builder(data_dir: str, *, height: int = 64, width: int = 64, frames: int = 16,
                        fps: int = 8, long_factor: int = 4, max_objects: int = 3,
                        num_train: int = 1024, num_test: int = 128, num_long: int = 32,
                        seed: int = 0, sample_rate: int = 0,
                        sound_scenes: bool = False) -> SceneVideos:
  """A SceneVideos builder for these settings under data_dir (not prepared). sample_rate > 0
  stores a soundtrack (a multiple of fps); sound_scenes draws the scenes made for sound."""
  params = dict(height=height, width=width, frames=frames, fps=fps, long_factor=long_factor,
                max_objects=max_objects, num_train=num_train, num_test=num_test,
                num_long=num_long, seed=seed)
  _check_ints(params, dict(frames=2, seed=0, num_test=0, num_long=0, height=8, width=8))
  if max_objects > scenes.MAX_OBJECTS:
    raise ValueError(f"max_objects must be <= {scenes.MAX_OBJECTS}, got {max_objects}")
  if sample_rate:
    soundtrack.samples_per_frame(sample_rate, fps)  # raises unless whole samples per frame
  # Named only when set, so the datasets built before sound existed keep their folders.
  extra = dict(**(dict(sample_rate=sample_rate) if sample_rate else {}),
               **(dict(sound=1) if sound_scenes else {}))
  config = SceneVideosConfig(name=_name(dict(params, **extra)), sample_rate=sample_rate,
                             sound_scenes=bool(sound_scenes), **params)
  return SceneVideos(config=config, data_dir=data_dir, file_format="array_record")


def make_moving_mnist_builder(data_dir: str, *, size: int = 64, frames: int = 20,
                              num_digits: int = 2, fps: int = 10, num_train: int = 10000,
                              num_test: int = 1000, seed: int = 0) -> MovingMnist:
  """A MovingMnist builder for these settings under data_dir (not prepared)."""
  params = dict(size=size, frames=frames, num_digits=num_digits, fps=fps, num_train=num_train,
                num_test=num_test, seed=seed)
  _check_ints(params, dict(size=moving_mnist.DIGIT_SIZE, frames=2, seed=0, num_test=0))
  config = MovingMnistConfig(name=_name(params), **params)
  return MovingMnist(config=config, data_dir=data_dir, file_format="array_record")


def make_photo_pans_builder(data_dir: str, *, height: int = 64, width: int = 64,
                            frames: int = 8, fps: int = 8, num_train: int = 1024,
                            num_test: int = 64, seed: int = 0) -> PhotoPans:
  """A PhotoPans builder for these settings under data_dir (not prepared)."""
  params = dict(height=height, width=width, frames=frames, fps=fps, num_train=num_train,
                num_test=num_test, seed=seed)
  _check_ints(params, dict(frames=2, seed=0, num_test=0, height=8, width=8))
  config = PhotoPansConfig(name=_name(params), **params)
  return PhotoPans(config=config, data_dir=data_dir, file_format="array_record")


def prepare(builder):
  """Generates the builder's dataset unless it is on disk; returns the builder."""
  if not builder.is_prepared():
    # try_download_gcs=False: never ask a hub for a prebuilt copy ("no hidden downloads").
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
