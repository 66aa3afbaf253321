"""Synthetic-data generation speed and grain loader throughput (clips/s).

  python -m benchmarks data [--clips N] [--repeats N] [--train-step-s S --train-batch B]

Settings: scenes 64x64x16 (1:1), scenes 256x144x32 (16:9) and Moving MNIST 64x64x20.
'generate' renders clips in this process (numpy, one core); 'prepare' adds TFDS encoding and the
array_record write; 'load' reads a prepared split through `vdm.data.loader.make_loader`
(shuffled, batched, worker_count=0). With --train-step-s, each row also shows the clips/s a
training step of --train-batch clips needs and the loader's headroom over it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from benchmarks.common import write
from vdm.data import moving_mnist
from vdm.data import scene_examples
from vdm.data import scenes_builder
from vdm.data.loader import make_loader

SETTINGS = (
    ("scenes 1:1", "scenes", dict(height=64, width=64, frames=16)),
    ("scenes 16:9", "scenes", dict(height=144, width=256, frames=32)),
    ("moving_mnist", "moving_mnist", dict(size=64, frames=20)),
)


def _generate(kind: str, params: dict, index: int) -> dict:
  if kind == "scenes":
    return scene_examples.make_example(0, "train", index, params["height"], params["width"],
                                       params["frames"])
  return moving_mnist.make_example(0, "train", index, **params)


def _rate(fn, clips: int, repeats: int) -> list[float]:
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    rates.append(clips / (time.perf_counter() - t0))
  return rates


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks data")
  parser.add_argument("--clips", type=int, default=32, help="clips per measurement")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--train-step-s", type=float, default=None,
                      help="seconds per training step, to compare the loader with")
  parser.add_argument("--train-batch", type=int, default=32)
  args = parser.parse_args(argv)
  need = args.train_batch / args.train_step_s if args.train_step_s else None
  # Loads the digits and photos outside the timings.
  scene_examples.make_example(0, "train", 0, 32, 32, 4)
  rows = []
  for label, kind, params in SETTINGS:
    n = args.clips
    gen = _rate(lambda: [_generate(kind, params, i) for i in range(n)], n, args.repeats)
    with tempfile.TemporaryDirectory() as data_dir:
      t0 = time.perf_counter()
      if kind == "scenes":
        builder = scenes_builder.make_scenes_builder(data_dir, num_train=n, num_test=0,
                                                     num_long=0, **params)
      else:
        builder = scenes_builder.make_moving_mnist_builder(data_dir, num_train=n, num_test=0,
                                                           **params)
      scenes_builder.prepare(builder)
      prep = n / (time.perf_counter() - t0)
      batch = min(args.batch_size, n)
      epochs = max(1, 64 // n)

      def read():
        loader = make_loader(builder, "train", batch_size=batch, seed=0, num_epochs=epochs)
        for b in loader:
          np.asarray(b["video"]).sum(dtype=np.int64)  # touch the bytes
      load = _rate(read, (n // batch) * batch * epochs, args.repeats)
      video = np.asarray(builder.as_data_source()["train"][0]["video"])
    row = dict(setting=label, shape="x".join(map(str, video.shape)),
               generate_clips_s=statistics.median(gen), generate_max=max(gen),
               prepare_clips_s=prep, load_clips_s=statistics.median(load), load_max=max(load),
               load_mb_s=statistics.median(load) * video.nbytes / 1e6)
    if need:
      row.update(train_need_clips_s=need, load_headroom=statistics.median(load) / need)
    rows.append(row)
  write("data", rows, dict(clips=args.clips, repeats=args.repeats,
                           batch_size=args.batch_size, train_step_s=args.train_step_s,
                           train_batch=args.train_batch))
