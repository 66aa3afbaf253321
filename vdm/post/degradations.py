"""How low-resolution video comes to be: the degradations an upscaler is trained to undo.

Real low-resolution footage was made by a resizer the upscaler never saw (area averaging, a
bilinear, bicubic or Lanczos filter), often after optics blur, with sensor noise, and stored
through a lossy codec. An upscaler trained on one of these alone learns to invert that one
filter and loses to plain bicubic on the others, so training draws a random chain per clip
(`random_degrade`, in the spirit of Real-ESRGAN's second-order pipeline, one order here):

    hr [B, T, H, W, C] -> blur(sigma) -> downscale(kernel, factor) -> + noise -> jpeg_like(q)
                       -> 8-bit quantisation   -> lr [B, T, H/f, W/f, C]

Every function is pure JAX on floats in [0, 1]. `jpeg_like` is the JPEG recipe (8x8 block DCT
of YCbCr, the standard quantisation tables scaled by quality, chroma at full or half resolution)
per frame: a stand-in for a video codec's intra coding that jit can differentiate through and
batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Downscaling kernels: name -> jax.image.resize method (antialiased, i.e. the kernel stretched by
# the factor, as PIL and most image libraries resize down). 'area' averages factor x factor
# blocks (PIL's BOX, OpenCV's INTER_AREA).
KERNELS = {"area": None, "bilinear": "linear", "bicubic": "cubic", "lanczos": "lanczos3"}

# JPEG's quantisation tables (ITU T.81, Annex K) for luma and chroma, quality 50.
_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)
_CHROMA = np.full((8, 8), 99, np.float32)
_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _dct_matrix(n: int = 8) -> np.ndarray:
  """Orthonormal DCT-II matrix [n, n]: coefficients = D @ block @ D.T."""
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
  d[0] /= np.sqrt(2.0)
  return d.astype(np.float32)


def downscale(hr: jax.Array, factor: int, kernel: str) -> jax.Array:
  """[..., H, W, C] -> [..., H // factor, W // factor, C] with one of KERNELS (H, W multiples
  of factor)."""
  *lead, h, w, c = hr.shape
  if KERNELS[kernel] is None:
    blocks = hr.reshape(*lead, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(-4, -2))
  return jax.image.resize(hr, (*lead, h // factor, w // factor, c), KERNELS[kernel],
                          antialias=True)


def gaussian_blur(x: jax.Array, sigma: jax.Array, radius: int = 3) -> jax.Array:
  """Separable Gaussian blur of [B, T, H, W, C] with a per-clip sigma [B] (pixels; 0 = none),
  edges replicated."""
  taps = jnp.arange(-radius, radius + 1, dtype=x.dtype)
  safe = jnp.maximum(sigma, 1e-3)[:, None]
  kernel = jnp.exp(-0.5 * jnp.square(taps[None] / safe))
  kernel = jnp.where(sigma[:, None] > 1e-3, kernel, (taps[None] == 0).astype(x.dtype))
  kernel = kernel / kernel.sum(-1, keepdims=True)  # [B, 2r+1]
  pad = [(0, 0)] * x.ndim
  for axis in (2, 3):
    width = list(pad)
    width[axis] = (radius, radius)
    padded = jnp.pad(x, width, mode="edge")
    n = x.shape[axis]
    shifted = jnp.stack([jax.lax.slice_in_dim(padded, i, i + n, axis=axis)
                         for i in range(2 * radius + 1)], axis=-1)
    x = jnp.einsum("bthwck,bk->bthwc", shifted, kernel)
  return x


def _quant_tables(quality: jax.Array) -> jax.Array:
  """Quantisation steps [B, 2, 8, 8] (luma, chroma; in [0, 255] units) for qualities [B] in
  [1, 100], by libjpeg's scaling rule."""
  q = jnp.clip(quality, 1.0, 100.0)
  scale = jnp.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None, None]
  tables = jnp.stack([jnp.asarray(_LUMA), jnp.asarray(_CHROMA)])[None]
  return jnp.clip(jnp.floor((tables * scale + 50.0) / 100.0), 1.0, 255.0)


def _block_quantise(plane: jax.Array, steps: jax.Array) -> jax.Array:
  """One JPEG plane [B, T, H, W] (H, W multiples of 8; centred values in [0, 255] units) through
  the 8x8 block DCT, its coefficients rounded to `steps` [B, 8, 8] and transformed back. The
  round is straight-through, so the chain stays differentiable."""
  b, t, h, w = plane.shape
  blocks = plane.reshape(b, t, h // 8, 8, w // 8, 8)
  d = jnp.asarray(_dct_matrix())
  coef = jnp.einsum("ij,btpjqk,lk->btpiql", d, blocks, d)
  steps = steps[:, None, None, :, None, :]
  scaled = coef / steps
  rounded = scaled + jax.lax.stop_gradient(jnp.round(scaled) - scaled)
  return jnp.einsum("ji,btpjqk,kl->btpiql", d, rounded * steps, d).reshape(b, t, h, w)


def _halve(plane: jax.Array) -> jax.Array:
  """[..., H, W] -> [..., H/2, W/2]: the 2x2 average of JPEG's and H.264's 4:2:0 chroma."""
  *lead, h, w = plane.shape
  return plane.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _double(plane: jax.Array) -> jax.Array:
  """[..., h, w] -> [..., 2h, 2w] by linear interpolation (libjpeg's 'fancy' upsampling: 3/4 of
  the nearer sample, 1/4 of the farther; edges repeated)."""
  *lead, h, w = plane.shape
  return jax.image.resize(plane, (*lead, 2 * h, 2 * w), "linear")


def jpeg_like(x: jax.Array, quality: jax.Array, subsample: jax.Array | None = None) -> jax.Array:
  """JPEG-style compression of every frame of [B, T, H, W, 3] in [0, 1] at a per-clip quality
  [B] (1..100): YCbCr, 8x8 block DCT, coefficients rounded to the scaled tables' steps, back to
  RGB. subsample: bool [B], clips whose chroma is coded at half resolution (4:2:0, what most
  JPEGs and nearly all video use); None = full-resolution chroma (4:4:4) for every clip."""
  b, t, h, w, _ = x.shape
  x = jnp.pad(x, [(0, 0), (0, 0), (0, -h % 16), (0, -w % 16), (0, 0)], mode="edge") * 255.0
  r, g, bl = x[..., 0], x[..., 1], x[..., 2]
  y = 0.299 * r + 0.587 * g + 0.114 * bl
  cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
  cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
  tables = _quant_tables(quality)  # [B, 2, 8, 8]
  y = _block_quantise(y - 128.0, tables[:, 0]) + 128.0
  chroma = [_block_quantise(c, tables[:, 1]) for c in (cb, cr)]
  if subsample is not None:
    halved = [_double(_block_quantise(_halve(c), tables[:, 1])) for c in (cb, cr)]
    pick = jnp.asarray(subsample)[:, None, None, None]
    chroma = [jnp.where(pick, half, full) for half, full in zip(halved, chroma)]
  cb, cr = chroma
  rgb = jnp.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
  return rgb[:, :, :h, :w] / 255.0


def quantise(x: jax.Array) -> jax.Array:
  """Clip to [0, 1] and round to 8-bit levels, as a decoded video is."""
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0) / 255.0


def random_degrade(rng: jax.Array, hr: jax.Array, factor: int, *, kernels: tuple[str, ...],
                   blur: float, noise: float, jpeg: float, jpeg_quality: float,
                   chroma: float = 0.0, clean: float = 0.0) -> jax.Array:
  """One random degradation chain per clip of hr [B, T, H, W, C] in [0, 1] -> lr
  [B, T, H/f, W/f, C] quantised to 8 bits.

  kernels: the downscaling kernels drawn from (uniformly); blur: max Gaussian sigma (HR pixels)
  applied before downscaling, drawn uniformly in [0, blur]; noise: max std (8-bit levels) of
  fresh per-frame Gaussian noise; jpeg: probability of `jpeg_like` compression, at a quality
  drawn uniformly in [jpeg_quality, 95]; chroma: probability that a compressed clip's chroma is
  coded at half resolution (4:2:0); clean: probability that a clip is only downscaled (and
  noised): no blur and no compression, since much real footage is a clean resize, and a model
  that only ever sees softened input learns to smooth away fine texture.
  """
  b = hr.shape[0]
  r_blur, r_kernel, r_std, r_noise, r_jpeg, r_q = jax.random.split(rng, 6)
  # Its own key (as chroma's), so clean = 0 draws the chain drawn before it existed.
  degraded = ~jax.random.bernoulli(jax.random.fold_in(rng, 8), clean, (b,))  # [B]
  if blur > 0:
    hr = gaussian_blur(hr, blur * jax.random.uniform(r_blur, (b,)) * degraded)
  # Every kernel's downscale, one picked per clip: the kernel is a static choice in
  # jax.image.resize, and the downscale costs little beside the model.
  choice = jax.random.randint(r_kernel, (b,), 0, len(kernels))
  options = jnp.stack([downscale(hr, factor, k) for k in kernels])  # [K, B, T, h, w, C]
  lr = jnp.take_along_axis(options, choice[None, :, None, None, None, None], axis=0)[0]
  if noise > 0:
    std = noise * jax.random.uniform(r_std, (b, 1, 1, 1, 1)) / 255.0
    lr = lr + std * jax.random.normal(r_noise, lr.shape, lr.dtype)
  if jpeg > 0:
    lr = jnp.clip(lr, 0.0, 1.0)
    quality = jax.random.uniform(r_q, (b,), minval=jpeg_quality, maxval=95.0)
    # Its own key (not a seventh split), so chroma = 0 draws what the chain drew before it.
    halve = jax.random.bernoulli(jax.random.fold_in(rng, 7), chroma, (b,))
    compressed = jpeg_like(quantise(lr), quality, halve if chroma > 0 else None)
    use = jax.random.bernoulli(r_jpeg, jpeg, (b, 1, 1, 1, 1)) & degraded[:, None, None, None, None]
    lr = jnp.where(use, compressed, lr)
  return quantise(lr)
