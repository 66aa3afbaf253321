"""Lazy, safe readers of checkpoint files: name -> one tensor at a time, as numpy.

    weights = open_weights(["model.safetensors"])   # or a sharded *.safetensors.index.json
    weights["blocks.0.self_attn.q.weight"]          # read now, bf16 stays bf16 (ml_dtypes)

Nothing executes code from a file:
- safetensors: the `safetensors` package (a JSON header and raw bytes);
- `.pth` (PyTorch's zip format, what `torch.save` writes): read here by a restricted unpickler
  that rebuilds tensors from the archive's raw storages and refuses every global other than the
  few a state dict of tensors needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
  `torch._utils._rebuild_parameter` and the storage dtypes), the allow-list that
  `torch.load(weights_only=True)` enforces too, without needing torch. A file that names any other
  global raises `UnsafeCheckpointError` before anything is built.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import zipfile
from typing import Callable, Iterable, Mapping

import ml_dtypes
import numpy as np


class UnsafeCheckpointError(ValueError):
  """A .pth file asks to build an object that a plain state dict of tensors never holds."""


# torch's storage classes (as pickled) -> numpy dtypes.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _LazyTensor:
  """A tensor of a .pth archive: read from its storage only when asked."""

  def __init__(self, read: Callable[[str], bytes], storage, offset: int, size, stride):
    self.read, self.storage, self.offset = read, storage, offset
    self.shape, self.stride = tuple(size), tuple(stride)

  @property
  def dtype(self):
    return self.storage[0]

  def numpy(self) -> np.ndarray:
    dtype, key = self.storage
    flat = np.frombuffer(self.read(key), dtype=dtype)
    if not self.shape:
      return flat[self.offset].copy()
    strides = tuple(s * dtype.itemsize for s in self.stride)
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape, strides)
    return np.ascontiguousarray(view)


def read_pth(path: str, key: str | None = None) -> dict[str, _LazyTensor]:
  """The tensors of a PyTorch zip checkpoint (a flat dict of name -> tensor), lazily.

  key: the state dict to read from a file that holds several under names (a training
  checkpoint such as Self-Forcing's {'generator', 'generator_ema', 'critic'}); None for a file
  that is one state dict.
  Raises UnsafeCheckpointError for any pickled global outside the state-dict allow-list, and
  ValueError for a file that is not PyTorch's zip format (the legacy pre-1.6 format included)
  or a key it does not hold.
  """
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not a PyTorch zip checkpoint (torch.save since 1.6)")
  archive = zipfile.ZipFile(path)
  pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
  if len(pickles) != 1:
    raise ValueError(f"{path}: expected one data.pkl in the archive, found {pickles}")
  prefix = pickles[0][:-len("data.pkl")]

  def read(key: str) -> bytes:
    return archive.read(f"{prefix}data/{key}")

  def rebuild_tensor(storage, offset, size, stride, *_):
    return _LazyTensor(read, storage, offset, size, stride)

  class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
      if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
      if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return rebuild_tensor
      if (module, name) == ("torch._utils", "_rebuild_parameter"):
        return lambda data, *_: data
      if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
      raise UnsafeCheckpointError(f"{path}: refusing to unpickle {module}.{name} (a weights "
                                  "file holds only tensors)")

    def persistent_load(self, pid):
      if not (isinstance(pid, tuple) and pid and pid[0] == "storage"
              and isinstance(pid[1], _StorageType)):
        raise UnsafeCheckpointError(f"{path}: unexpected persistent id {pid!r}")
      return (pid[1].dtype, str(pid[2]))

  with archive.open(pickles[0]) as f:
    state = Unpickler(f).load()
  if not isinstance(state, Mapping):
    raise ValueError(f"{path}: holds a {type(state).__name__}, not a dict of tensors")
  named = sorted(k for k, v in state.items() if isinstance(v, Mapping))
  if key is not None:
    if key not in named:
      raise ValueError(f"{path}: has no state dict {key!r}; it holds {named or 'one state dict'}")
    state = state[key]
  elif named:
    raise ValueError(f"{path}: holds several state dicts {named}; name the one to read")
  bad = [k for k, v in state.items() if not isinstance(v, _LazyTensor)]
  if bad:
    raise ValueError(f"{path}: entries that are not tensors: {bad[:5]}")
  return dict(state)


class Weights(Mapping):
  """name -> numpy array, read on access from safetensors files or .pth archives."""

  def __init__(self, paths: Iterable[str], key: str | None = None):
    """key: the state dict to read from .pth files that hold several (`read_pth`)."""
    self.paths = [os.fspath(p) for p in paths]
    self._where: dict[str, tuple] = {}  # name -> (kind, source)
    for path in self.paths:
      if path.endswith(".safetensors"):
        from safetensors import safe_open
        with safe_open(path, framework="numpy") as f:
          names = list(f.keys())
        self._where.update({n: ("safetensors", path) for n in names})
      elif path.endswith((".pth", ".pt", ".bin")):
        self._where.update({n: ("pth", t) for n, t in read_pth(path, key).items()})
      else:
        raise ValueError(f"{path}: not a .safetensors or .pth weights file")

  def __getitem__(self, name: str) -> np.ndarray:
    kind, source = self._where[name]
    if kind == "pth":
      return source.numpy()
    from safetensors import safe_open
    with safe_open(source, framework="numpy") as f:
      dtype = f.get_slice(name).get_dtype()
      if dtype != "BF16":
        return f.get_tensor(name)
    # numpy has no bfloat16: read the raw bytes through the flax reader and view them.
    import jax
    with jax.default_device(jax.devices("cpu")[0]), safe_open(source, framework="flax") as f:
      return np.asarray(f.get_tensor(name))

  def shape(self, name: str) -> tuple:
    """A tensor's shape, without reading it."""
    kind, source = self._where[name]
    if kind == "pth":
      return source.shape
    from safetensors import safe_open
    with safe_open(source, framework="numpy") as f:
      return tuple(f.get_slice(name).get_shape())

  def __iter__(self):
    return iter(self._where)

  def __len__(self) -> int:
    return len(self._where)


def safetensors_files(directory: str, stem: str = "diffusion_pytorch_model") -> list[str]:
  """The files of one safetensors set in `directory`: those its `<stem>.safetensors.index.json`
  lists (a sharded set), or `<stem>.safetensors`, or every *.safetensors there."""
  index = os.path.join(directory, f"{stem}.safetensors.index.json")
  if os.path.isfile(index):
    with open(index) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
    missing = [n for n in files if not os.path.isfile(os.path.join(directory, n))]
    if missing:
      raise FileNotFoundError(f"{index} lists shards that are missing: {missing}")
    return [os.path.join(directory, n) for n in files]
  single = os.path.join(directory, f"{stem}.safetensors")
  if os.path.isfile(single):
    return [single]
  files = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
  if not files:
    raise FileNotFoundError(f"{directory}: no {stem}.safetensors (or shards with an index)")
  return [os.path.join(directory, n) for n in files]


def open_weights(paths: Iterable[str], key: str | None = None) -> Weights:
  return Weights(paths, key)
