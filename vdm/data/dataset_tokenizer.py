"""The sentencepiece tokenizer trained from a dataset's own train captions, stored with it.

`prepare_tokenizer(builder)` writes `<builder.data_path>/tokenizer.model` once (atomically) and
returns its path; later calls reuse it. Captions are recomputed from what defines them, not by
decoding every stored video: scene specs (cheap to sample), Moving MNIST labels, or the folder
import's manifest; any other builder falls back to reading its records.
"""
from __future__ import annotations

import os

from vdm.text import tokenizer as text_tokenizer

TOKENIZER_FILE = "tokenizer.model"


def train_captions(builder) -> list[str]:
  """Every caption of the builder's 'train' split (both phrasings for scenes), in order."""
  from vdm.data import captions, importer, moving_mnist, scenes, scenes_builder
  c = builder.builder_config
  if isinstance(builder, scenes_builder.SceneVideos):
    out = []
    for i in range(c.num_train):
      scene = scenes.sample_scene(scenes.example_rng(c.seed, "train", i), c.height, c.width,
                                  c.frames, "train", motion_frames=c.frames,
                                  max_objects=c.max_objects)
      out += [captions.short_caption(scene), captions.long_caption(scene)]
    return out
  if isinstance(builder, scenes_builder.MovingMnist):
    return [moving_mnist.make_example(c.seed, "train", i, size=c.size, frames=c.frames,
                                      num_digits=c.num_digits)["caption"]
            for i in range(c.num_train)]
  if isinstance(builder, importer.FolderVideos):
    manifest = importer.load_manifest(os.path.join(c.staging, "manifest.json"))
    return [e["caption"] for e in manifest["files"].values() if e["status"] == "imported"]
  sources = builder.as_data_source()
  split = "train" if "train" in sources else sorted(sources)[0]
  return [r["caption"].decode() if isinstance(r["caption"], bytes) else str(r["caption"])
          for r in sources[split]]


def prepare_tokenizer(builder, *, vocab_size: int = 256) -> str:
  """Path of the dataset's tokenizer, trained on train_captions(builder) if not there yet."""
  path = os.path.join(str(builder.data_path), TOKENIZER_FILE)
  if not os.path.isfile(path):
    proto = text_tokenizer.train_tokenizer(train_captions(builder), vocab_size=vocab_size)
    partial = path + ".partial"
    with open(partial, "wb") as f:
      f.write(proto)
    os.replace(partial, path)
  return path
