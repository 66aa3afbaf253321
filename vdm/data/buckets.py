"""A loader over several buckets (splits with different, each static, shapes), e.g. the
'<height>x<width>_t<frames>' splits of a folder import.

Every batch comes from one bucket, so its arrays have static shapes; buckets are mixed in
proportion to their sizes, each reshuffled every epoch, deterministically from the seed. Each
process reads a disjoint slice of every bucket (multi-host). The iterator is resumable:
`it.get_state()` / `it.set_state(state)` (orbax: `grain.checkpoint.CheckpointSave(it)`).
"""
from __future__ import annotations

import grain
import tensorflow_datasets as tfds

from vdm.data.loader import ToNumpy, stack_examples


def make_bucketed_dataset(builder, splits=None, *, batch_size: int, seed: int,
                          shard_index: int | None = None,
                          shard_count: int | None = None,
                          read_threads: int = 1, prefetch: int = 4) -> grain.IterDataset:
  """An endless grain IterDataset of batches (see `vdm.data.loader.make_loader` for the batch dict).

  splits: bucket split names (default: all of the builder's splits); shard_index/shard_count
  default to jax.process_index()/jax.process_count(); read_threads/prefetch: background
  reading per bucket, in batches (grain's defaults, 16 threads and 500 elements, would read far
  ahead on every bucket of an endless stream). Iterate with `iter(...)`.
  """
  sources = builder.as_data_source()
  splits = sorted(sources) if splits is None else list(splits)
  unknown = [s for s in splits if s not in sources]
  if unknown or not splits:
    raise ValueError(f"splits must be a non-empty subset of {sorted(sources)}, got {splits}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if shard_index is None or shard_count is None:
    import jax
    shard_index, shard_count = jax.process_index(), jax.process_count()
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
  dtypes = {k: (None if isinstance(f, tfds.features.Text) else f.np_dtype)
            for k, f in builder.info.features.items()}
  parts, weights = [], []
  for i, split in enumerate(splits):
    ds = grain.MapDataset.source(sources[split])[shard_index::shard_count]
    if len(ds) < batch_size:
      continue  # Too small to fill one batch on this process.
    weights.append(len(ds))
    # shuffle-then-repeat draws a new permutation every epoch.
    ds = (ds.shuffle(seed=seed * 1009 + i).repeat().map(ToNumpy(dtypes))
          .batch(batch_size, drop_remainder=True, batch_fn=stack_examples))
    parts.append(ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                      prefetch_buffer_size=prefetch)))
  if not parts:
    raise ValueError(f"no split has batch_size={batch_size} examples per process")
  return grain.IterDataset.mix(parts, weights=weights)
