"""grain input pipeline over a prepared TFDS builder (random access via array_record), and over
a list of captions (text-only training)."""
import hashlib
import json

from absl import flags
import grain
import numpy as np
import tensorflow_datasets as tfds


class ToNumpy(grain.transforms.Map):
  """Restores declared dtypes and decodes text.

  The data source returns scalars as python int/float (which would stack to int64/float64) and
  `Text` as utf-8 bytes; models want the declared dtypes and str.
  """

  def __init__(self, dtypes: dict):
    self._dtypes = dtypes  # feature name -> numpy dtype, None for text

  def map(self, example: dict) -> dict:
    out = {}
    for key, value in example.items():
      if self._dtypes.get(key) is None:
        out[key] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
      else:
        out[key] = np.asarray(value, self._dtypes[key])
    return out


def stack_examples(examples) -> dict:
  """Stacks example dicts into a batch; captions become an object array of python str [B]."""
  text = [k for k, v in examples[0].items() if isinstance(v, str)]
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k not in text}
  # Object dtype keeps python str (a '<U' array would pad to the longest caption).
  for k in text:
    batch[k] = np.array([e[k] for e in examples], dtype=object)
  return batch


class BatchRowsSampler:
  """The rows [start, stop) of every global batch of `batch_size` records that `sampler` orders:
  what one process of a multi-process run reads (`vdm.parallel.Placement.process_rows`), so the
  processes together see exactly the batches a single process sees, row for row."""

  def __init__(self, sampler, batch_size: int, rows: slice):
    self._sampler, self._batch_size = sampler, batch_size
    self._start, self._local = rows.start, rows.stop - rows.start

  def __len__(self) -> int:
    n = len(self._sampler)
    return n // self._batch_size * self._local

  def __repr__(self) -> str:
    return (f"BatchRowsSampler({self._sampler!r}, batch_size={self._batch_size}, "
            f"rows={self._start}:{self._start + self._local})")

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    batch, row = divmod(index, self._local)
    record = self._sampler[batch * self._batch_size + self._start + row]
    return grain.RecordMetadata(index=index, record_key=record.record_key, rng=record.rng)


def _rows_sampler(sampler, batch_size: int, rows: slice | None):
  if rows is None or (rows.start, rows.stop) == (0, batch_size):
    return sampler, batch_size  # a single process: the sampler itself (its checkpoints stay valid)
  return BatchRowsSampler(sampler, batch_size, rows), rows.stop - rows.start


def skip_records(iterator, records: int) -> None:
  """Sets a fresh loader iterator (worker_count 0) to just after its first `records` records
  without reading them: how a run resumed on another number of processes finds its place (each
  step reads a fixed number of records of each process's rows)."""
  state = json.loads(iterator.get_state())
  if state.get("worker_count", 0) != 0 or list(state["last_seen_indices"]) != ["0"]:
    raise ValueError("a loader with worker processes cannot be repositioned by record count")
  state["last_seen_indices"] = {"0": records - 1}
  iterator.set_state(json.dumps(state).encode())


def make_loader(builder, split: str, *, batch_size: int, seed: int, shuffle: bool = True,
                num_epochs: int | None = None, drop_remainder: bool = True,
                worker_count: int = 0,
                shard_options: grain.sharding.ShardOptions | None = None,
                rows: slice | None = None) -> grain.DataLoader:
  """A deterministic loader of dict batches from `builder.as_data_source()[split]`.

  Each batch holds 'video' uint8 [B, T, H, W, 3], 'caption' object array of str [B],
  'center' float32 [B, T, 2], 'radius' float32 [B] and int32 'color', 'shape', 'direction',
  'background' [B]. num_epochs=None repeats forever; batches may span an epoch boundary (grain
  batches the flat index stream). worker_count > 0 starts grain worker processes: still
  deterministic for a fixed (seed, worker_count), but each worker batches every
  worker_count-th record, so batches differ from those of another worker_count.
  rows: this process's rows [start, stop) of each global batch of `batch_size` (multi-process
  runs); its batches then hold stop - start records.
  """
  sources = builder.as_data_source()
  if split not in sources:
    raise ValueError(f"split must be one of {sorted(sources)}, got {split!r}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    # grain's worker processes read absl flags; outside absl.app nothing has parsed them, and
    # grain's own defaults are what we want.
    flags.FLAGS.mark_as_parsed()
  source = sources[split]
  dtypes = {k: (None if isinstance(f, tfds.features.Text) else f.np_dtype)
            for k, f in builder.info.features.items()}
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shuffle=shuffle, seed=seed, num_epochs=num_epochs,
      shard_options=shard_options or grain.sharding.NoSharding())
  sampler, local = _rows_sampler(sampler, batch_size, rows)
  return grain.DataLoader(
      data_source=source, sampler=sampler, worker_count=worker_count,
      shard_options=shard_options or grain.sharding.NoSharding(),
      operations=[ToNumpy(dtypes), grain.transforms.Batch(
          local, drop_remainder=drop_remainder, batch_fn=stack_examples)])


class CaptionSource(grain.sources.RandomAccessDataSource):
  """A list of captions as a grain data source of {'caption': str} records."""

  def __init__(self, captions: list[str]):
    self._captions = list(captions)

  def __len__(self) -> int:
    return len(self._captions)

  def __getitem__(self, index: int) -> dict:
    return {"caption": self._captions[index]}

  def __repr__(self) -> str:
    # grain compares this repr with the checkpoint's on resume: name the content, not the object.
    digest = hashlib.sha256("\n".join(self._captions).encode()).hexdigest()[:16]
    return f"CaptionSource(num={len(self._captions)}, sha256={digest})"


def make_source_loader(source, *, batch_size: int, seed: int,
                       rows: slice | None = None) -> grain.DataLoader:
  """Shuffled, endlessly repeating batches of a grain data source whose records are dicts of
  arrays and str (e.g. `vdm.train.latent_cache.LatentSource`), stacked by `stack_examples`;
  the same seed visits the same record indices in the same order as `make_loader`'s.
  rows: this process's rows of each global batch (as in `make_loader`)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  sampler = grain.samplers.IndexSampler(num_records=len(source), shuffle=True, seed=seed,
                                        num_epochs=None, shard_options=grain.sharding.NoSharding())
  sampler, local = _rows_sampler(sampler, batch_size, rows)
  return grain.DataLoader(data_source=source, sampler=sampler, worker_count=0,
                          shard_options=grain.sharding.NoSharding(),
                          operations=[grain.transforms.Batch(local, drop_remainder=True,
                                                             batch_fn=stack_examples)])


def make_caption_loader(captions: list[str], *, batch_size: int, seed: int,
                        rows: slice | None = None) -> grain.DataLoader:
  """Shuffled, endlessly repeating batches {'caption': object array of str [B]} of `captions`
  (text-only training); deterministic for a seed, and checkpointable like `make_loader`'s.
  rows: this process's rows of each global batch (as in `make_loader`)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not captions:
    raise ValueError("no captions to train on")
  sampler = grain.samplers.IndexSampler(num_records=len(captions), shuffle=True, seed=seed,
                                        num_epochs=None, shard_options=grain.sharding.NoSharding())
  sampler, local = _rows_sampler(sampler, batch_size, rows)
  return grain.DataLoader(data_source=CaptionSource(captions), sampler=sampler, worker_count=0,
                          shard_options=grain.sharding.NoSharding(),
                          operations=[grain.transforms.Batch(local, drop_remainder=True,
                                                             batch_fn=stack_examples)])


class ArraySource(grain.sources.RandomAccessDataSource):
  """Equal-length numpy arrays as a grain data source: record i is {name: array[i]}."""

  def __init__(self, arrays: dict, name: str):
    lengths = {k: len(v) for k, v in arrays.items()}
    if not arrays or len(set(lengths.values())) != 1:
      raise ValueError(f"ArraySource {name!r}: arrays of one non-zero length needed, got {lengths}")
    self._arrays, self._name = dict(arrays), name
    self._len = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict:
    return {k: np.asarray(v[index]) for k, v in self._arrays.items()}

  def __repr__(self) -> str:
    # grain compares this repr with the checkpoint's on resume: the name and the shapes.
    shapes = {k: tuple(v.shape) for k, v in sorted(self._arrays.items())}
    return f"ArraySource({self._name}, {shapes})"


def make_array_loader(arrays: dict, *, name: str, batch_size: int,
                      seed: int) -> grain.DataLoader:
  """Shuffled, endlessly repeating batches {name: [B, ...]} of equal-length arrays (e.g. the
  teacher's ODE trajectories of distillation); deterministic for a seed, checkpointable."""
  source = ArraySource(arrays, name)
  if not 1 <= batch_size:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  sampler = grain.samplers.IndexSampler(num_records=len(source), shuffle=True, seed=seed,
                                        num_epochs=None, shard_options=grain.sharding.NoSharding())
  return grain.DataLoader(data_source=source, sampler=sampler, worker_count=0,
                          operations=[grain.transforms.Batch(batch_size, drop_remainder=True,
                                                             batch_fn=stack_examples)])
