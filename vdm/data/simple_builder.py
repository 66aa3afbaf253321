"""TFDS builder (`SimpleVideos`) of the `simple` dataset, the clips of `vdm.data.simple`,
without TensorFlow.

Only features that encode in numpy are used (`Tensor` with ZLIB encoding, `Text`), and the data
is written as array_record so `builder.as_data_source()` gives random access for grain.
`tfds.features.Video` and `as_dataset()` would need TensorFlow.
"""
import dataclasses

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from vdm.data import simple


@dataclasses.dataclass(eq=False)
class SimpleVideosConfig(tfds.core.BuilderConfig):
  """Resolution, clip length and split sizes; the name must encode them (see `config_name`)."""
  height: int = 32
  width: int = 32
  frames: int = 9
  fps: int = 8
  num_train: int = 1024
  num_test: int = 128
  seed: int = 0
  wrap: bool = False


def config_name(*, height: int, width: int, frames: int, fps: int, num_train: int,
                num_test: int, seed: int, wrap: bool = False) -> str:
  """A config name unique to every setting, so datasets never overwrite each other on disk
  (unwrapped clips keep the names they had before `wrap` existed)."""
  return (f"{height}x{width}_t{frames}_fps{fps}_train{num_train}_test{num_test}_seed{seed}"
          + ("_wrap" if wrap else ""))


class SimpleVideos(tfds.core.GeneratorBasedBuilder):
  """One coloured shape sliding over a flat background, with a caption and ground truth."""

  # The TFDS name is the folder prepared datasets are written to and part of the source path a
  # checkpointed loader records; fixed so that data prepared and checkpoints written under it
  # stay valid.
  name = "synthetic_videos"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # Configs are built on demand by make_builder; this default only makes the class usable alone.
  BUILDER_CONFIGS = [SimpleVideosConfig(name=config_name(
      height=32, width=32, frames=9, fps=8, num_train=1024, num_test=128, seed=0))]
  # tfds 4.9.10 finds a builder's source folder through importlib resources, which fails here
  # twice: it needs the `importlib_resources` backport (not installed), and it breaks on
  # namespace packages (e.g. a setuptools editable install). tfds lets a builder name it instead.
  code_path = epath.Path(__file__)
  pkg_dir_path = epath.Path(__file__).parent

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        description=simple.__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(
                shape=(c.frames, c.height, c.width, 3), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "caption": tfds.features.Text(),
            "center": tfds.features.Tensor(shape=(c.frames, 2), dtype=np.float32),
            "radius": tfds.features.Tensor(shape=(), dtype=np.float32),
            "color": tfds.features.Tensor(shape=(), dtype=np.int32),
            "shape": tfds.features.Tensor(shape=(), dtype=np.int32),
            "direction": tfds.features.Tensor(shape=(), dtype=np.int32),
            "background": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(fps=c.fps),
        # Keep records in key order so data_source[split][i] is example i of generate_examples;
        # the grain sampler shuffles at read time.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: every clip is generated from the seed.
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, num: int):
    c = self.builder_config
    yield from simple.generate_examples(c.seed, split, num, c.height, c.width, c.frames,
                                        wrap=c.wrap)


def make_builder(data_dir: str, *, height: int, width: int, frames: int, fps: int,
                 num_train: int, num_test: int, seed: int, wrap: bool = False) -> SimpleVideos:
  """A builder for these settings under `data_dir` (not prepared; see `prepare`); wrap: objects
  move on a torus (`vdm.data.simple`)."""
  params = dict(height=height, width=width, frames=frames, fps=fps, num_train=num_train,
                num_test=num_test, seed=seed)
  if not isinstance(wrap, bool):
    raise ValueError(f"wrap must be True or False, got {wrap!r}")
  for key, value in params.items():
    if not isinstance(value, (int, np.integer)) or value < (1 if key != "seed" else 0):
      raise ValueError(f"{key} must be a {'non-negative' if key == 'seed' else 'positive'} "
                       f"int, got {value!r}")
  if frames < 2:
    raise ValueError(f"frames must be >= 2 to show motion, got {frames}")
  config = SimpleVideosConfig(name=config_name(**params, wrap=wrap), **params, wrap=wrap)
  return SimpleVideos(config=config, data_dir=data_dir, file_format="array_record")


def prepare(data_dir: str, *, height: int, width: int, frames: int, fps: int, num_train: int,
            num_test: int, seed: int, wrap: bool = False) -> SimpleVideos:
  """Like make_builder, but generates the dataset first if it is not on disk yet."""
  builder = make_builder(data_dir, height=height, width=width, frames=frames, fps=fps,
                         num_train=num_train, num_test=num_test, seed=seed, wrap=wrap)
  if not builder.is_prepared():
    # try_download_gcs=False: never ask a hub for a prebuilt copy ("no hidden downloads").
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
