"""What the denoiser stage would otherwise recompute every step, computed once and kept on disk
beside the dataset: the VAE latents of every training clip, and the caption embeddings of a
frozen text encoder.

Both are deterministic functions of the data and of frozen weights, so a cache is keyed by a
digest of those weights (`module_digest`): a retrained VAE or encoder gets a new key and a new
cache, and a cache whose key does not match is never read (old ones are left in place, so two
workdirs sharing a dataset with different VAEs do not rebuild each other's). On the spine
(32x32x9 clips, batch 32) encoding a batch costs about a fifth of a denoiser step, and decoding
its records from the dataset more on top; the cached step reads a memory-mapped array.

Layout, under the prepared dataset's folder (`builder.data_dir`):

  latents/<key>/<split>.npy          float32 [N, T', h, w, C]: VAE posterior means, record order
  latents/<key>/<split>.json         captions and the small per-clip fields, record order; key
  text_embeddings/<key>/<split>.npz  embeddings [U, L, D], mask [U, L] of the split's U distinct
                                     captions and the empty prompt, and their captions

Each is written to a temporary name and renamed, so a killed run leaves a whole cache or none.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import grain
import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from vdm.data.loader import make_loader
from vdm.nn import normalize_pixels
from vdm.pytree import leaf_names

KEY_CHARS = 16  # hex digits of the sha256 that name a cache


def module_digest(module: nnx.Module, *extra) -> str:
  """sha256 (hex) of a module's parameters (names, shapes, dtypes, bytes) and of `extra` values
  (e.g. its config section, a tokenizer): equal exactly when they all are."""
  params = nnx.state(module, nnx.Param)
  h = hashlib.sha256()
  for name, leaf in zip(leaf_names(params), jax.tree.leaves(params)):
    array = np.asarray(jax.device_get(leaf))
    h.update(f"{name}:{array.shape}:{array.dtype}\n".encode())
    h.update(np.ascontiguousarray(array).tobytes())
  for value in extra:
    h.update(value if isinstance(value, bytes) else json.dumps(value, sort_keys=True,
                                                                default=str).encode())
  return h.hexdigest()


def _publish(tmp: str, final: str) -> None:
  """Moves a finished temporary directory into place (another process may have won the race:
  its cache is the same, keep it)."""
  try:
    os.rename(tmp, final)
  except OSError:
    if not os.path.isdir(final):
      raise
    shutil.rmtree(tmp, ignore_errors=True)


def _scalar_fields(builder) -> list[str]:
  """The per-clip features a latent record keeps: every feature but the video and the caption
  (ground truth such as 'center', 'radius', 'direction'; small)."""
  return [k for k in builder.info.features if k not in ("video", "caption")]


def latent_cache_dir(builder, key: str) -> str:
  return os.path.join(str(builder.data_dir), "latents", key[:KEY_CHARS])


def build_latent_cache(builder, split: str, vae, vae_config, *, batch_size: int = 64) -> str:
  """Encodes every clip of `split` once with `vae` (posterior means, un-normalised) into the
  cache for this VAE; returns the cache directory. A cache already there is reused as is.

  vae_config: the config's `vae` section (part of the key, with the weights)."""
  key = module_digest(vae, vae_config.to_dict() if hasattr(vae_config, "to_dict") else vae_config)
  directory = latent_cache_dir(builder, key)
  if os.path.exists(os.path.join(directory, f"{split}.json")):
    return directory
  source = builder.as_data_source()[split]
  num = len(source)
  encode = jax.jit(lambda video: vae.encode(normalize_pixels(video))[0])
  tmp = f"{directory}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  loader = make_loader(builder, split, batch_size=batch_size, seed=0, shuffle=False,
                       num_epochs=1, drop_remainder=False)
  fields = _scalar_fields(builder)
  captions, extras, latents, start = [], {k: [] for k in fields}, None, 0
  with tqdm(total=num, desc=f"latent cache ({split})",
            disable=os.environ.get("VDM_NO_PROGRESS") == "1") as bar:
    for batch in loader:
      video = batch["video"]
      n = len(video)
      if n < batch_size:  # pad the last batch: one compiled shape for the whole pass
        video = np.concatenate([video, np.repeat(video[-1:], batch_size - n, 0)])
      z = np.asarray(encode(video))[:n]
      if latents is None:
        latents = np.lib.format.open_memmap(os.path.join(tmp, f"{split}.npy"), mode="w+",
                                            dtype=np.float32, shape=(num,) + z.shape[1:])
      latents[start:start + n] = z
      start += n
      captions += [str(c) for c in batch["caption"]]
      for k in fields:
        extras[k] += np.asarray(batch[k]).tolist()
      bar.update(n)
  latents.flush()
  del latents
  with open(os.path.join(tmp, f"{split}.json"), "w") as f:
    json.dump(dict(key=key, split=split, num=num, captions=captions, fields={
        k: dict(dtype=np.dtype(builder.info.features[k].np_dtype).name, values=v)
        for k, v in extras.items()}), f)
  if os.path.isdir(directory):  # another split of the same key: add this split's files
    for name in os.listdir(tmp):
      os.replace(os.path.join(tmp, name), os.path.join(directory, name))
    shutil.rmtree(tmp, ignore_errors=True)
  else:
    _publish(tmp, directory)
  return directory


class LatentSource(grain.sources.RandomAccessDataSource):
  """A latent cache's split as a grain data source: record i is {'latents' float32 [T', h, w,
  C], 'caption' str, and the clip's small fields}, in the dataset's record order, so a loader
  with the same seed visits the clips in the same order as one over the videos."""

  def __init__(self, directory: str, split: str):
    with open(os.path.join(directory, f"{split}.json")) as f:
      meta = json.load(f)
    self._key, self._split = meta["key"], split
    self._latents = np.load(os.path.join(directory, f"{split}.npy"), mmap_mode="r")
    self._captions = meta["captions"]
    self._fields = {k: np.asarray(v["values"], v["dtype"]) for k, v in meta["fields"].items()}
    if not len(self._latents) == len(self._captions) == meta["num"]:
      raise ValueError(f"latent cache {directory} ({split}) is inconsistent: "
                       f"{len(self._latents)} latents, {len(self._captions)} captions; "
                       "delete the folder to rebuild it")

  def __len__(self) -> int:
    return len(self._captions)

  def __getitem__(self, index: int) -> dict:
    return dict(latents=np.array(self._latents[index]), caption=self._captions[index],
                **{k: v[index] for k, v in self._fields.items()})

  def __repr__(self) -> str:
    # grain compares this with the checkpoint's on resume: name the content, not the object.
    return (f"LatentSource(key={self._key[:KEY_CHARS]}, split={self._split}, "
            f"num={len(self)})")

  def all_latents(self) -> np.ndarray:
    """Every latent, [N, T', h, w, C] (memory-mapped)."""
    return self._latents

  @property
  def captions(self) -> list[str]:
    return list(self._captions)


def cache_statistics(source: LatentSource, max_clips: int = 4096) -> dict:
  """Per-channel mean and std [C] of the cached latents (the first `max_clips` clips)."""
  latents = np.asarray(source.all_latents()[:max_clips], np.float64)
  axes = tuple(range(latents.ndim - 1))
  return dict(mean=latents.mean(axes).astype(np.float32),
              std=(latents.std(axes) + 1e-6).astype(np.float32))


class TextCache:
  """Frozen text-encoder outputs of a fixed set of captions, looked up by caption.

  embeddings [U, L, D] float32 and mask [U, L] bool of the U distinct captions (the empty
  prompt included); `lookup(captions)` returns the rows of a batch."""

  def __init__(self, captions: list[str], embeddings: np.ndarray, mask: np.ndarray):
    self._row = {c: i for i, c in enumerate(captions)}
    self.embeddings, self.mask = embeddings, mask

  def lookup(self, captions) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [B, L, D], mask [B, L]) of `captions` (each must be in the cache)."""
    try:
      rows = np.array([self._row[str(c)] for c in captions])
    except KeyError as e:
      raise KeyError(f"caption {e.args[0]!r} is not in the text-embedding cache") from None
    return self.embeddings[rows], self.mask[rows]


def build_text_cache(builder, split: str, captions: list[str], encoder, tokenizer, max_length: int,
                     *, batch_size: int = 256) -> TextCache:
  """The frozen `encoder`'s outputs for the distinct `captions` and the empty prompt, computed
  once and stored beside the dataset under the digest of the encoder, the tokenizer and
  max_length; read back when that cache exists."""
  key = module_digest(encoder, tokenizer.model_proto, max_length)
  directory = os.path.join(str(builder.data_dir), "text_embeddings", key[:KEY_CHARS])
  path = os.path.join(directory, f"{split}.npz")
  if os.path.exists(path):
    with np.load(path) as f:
      return TextCache([str(c) for c in f["captions"]], f["embeddings"], f["mask"])
  unique = sorted(set(str(c) for c in captions) | {""})
  encode = jax.jit(lambda ids, mask: encoder(ids, mask))
  outputs, masks = [], []
  for start in range(0, len(unique), batch_size):
    part = unique[start:start + batch_size]
    ids, mask = tokenizer.encode(part + [""] * (batch_size - len(part)), max_length)
    outputs.append(np.asarray(encode(ids, mask))[:len(part)])
    masks.append(np.asarray(mask)[:len(part)])
  cache = TextCache(unique, np.concatenate(outputs), np.concatenate(masks))
  os.makedirs(directory, exist_ok=True)
  partial = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(partial, captions=np.array(unique), embeddings=cache.embeddings, mask=cache.mask)
  os.replace(partial, path)
  return cache
