"""Tiled spatial decoding: large frames decoded in overlapping latent tiles, seams blended.

A tile decoded on its own differs from the whole decode in two ways: near its borders the
spatial convolutions see 'SAME' zero padding instead of its neighbours, and every GroupNorm takes
its statistics over the tile instead of the whole frame. Overlapping the tiles and cross-fading
them with linear ramps hides the first (the seams); the second stays, and is large where a tile's
content differs from the frame's (a tile of plain background) — measured on the shipped VAE in
tests/test_vae_tiled.py. Tiling is therefore an approximation that trades quality for memory,
unlike temporal chunking, which is exact. A single tile covering the frame is the whole decode,
bit for bit. With `chunk`, memory is bounded by one tile of one chunk, whatever the frame size
and clip length.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from vdm.vae.chunked import jit_decode_step
from vdm.vae.model import CausalVAE


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` covering [0, size) with >= `overlap` shared positions.

  Tiles step by tile - overlap; the last one is moved back to end at `size` (so it may overlap
  its neighbour by more). One tile at 0 when tile >= size.
  """
  if tile >= size:
    return [0]
  starts = list(range(0, size - tile, tile - overlap))
  return starts + [size - tile]


def blend_ramp(length: int, ramp: int, lead: bool, trail: bool) -> np.ndarray:
  """Weights [length] in (0, 1]: rising linearly over the first `ramp` positions if `lead` (a tile
  overlaps this one before it), falling over the last `ramp` if `trail`, 1 elsewhere."""
  i = np.arange(length, dtype=np.float32) + 0.5
  w = np.ones(length, np.float32)
  if ramp > 0 and lead:
    w = np.minimum(w, i / ramp)
  if ramp > 0 and trail:
    w = np.minimum(w, (length - i) / ramp)
  return w


def decode_tiled(vae: CausalVAE, z: jax.Array, *, tile: int, overlap: int,
                 chunk: int | None = None) -> np.ndarray:
  """Decodes z [B, T', h, w, C] in spatial tiles -> video [B, T, h*s, w*s, 3] (float32).

  Args:
    tile: tile side in latent pixels (tiles are tile x tile, clipped to the frame).
    overlap: latent pixels neighbouring tiles share, cross-faded over overlap * s pixels;
      0 <= overlap < tile.
    chunk: if set, each tile is also decoded `chunk` latent frames at a time with the cached
      causal decoder (`CausalVAE.decode_step`), so memory is bounded in time as well.
  """
  if tile < 1:
    raise ValueError(f"tile must be >= 1 latent pixel, got {tile}")
  if not 0 <= overlap < tile:
    raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
  if chunk is not None and chunk < 1:
    raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
  b, t_lat, h, w, _ = z.shape
  s = vae.spatial_downsample
  step = jit_decode_step(vae)
  ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
  chunk = chunk or t_lat
  caches = {}
  out = []
  for start in range(0, t_lat, chunk):
    acc, norm = None, np.zeros((h * s, w * s, 1), np.float32)
    for iy, y0 in enumerate(ys):
      for ix, x0 in enumerate(xs):
        z_tile = z[:, start:start + chunk, y0:y0 + tile, x0:x0 + tile]
        frames, caches[iy, ix] = step(z_tile, caches.get((iy, ix)))
        frames = np.asarray(frames, np.float32)
        th, tw = frames.shape[2:4]
        wy = blend_ramp(th, overlap * s, iy > 0, iy < len(ys) - 1)
        wx = blend_ramp(tw, overlap * s, ix > 0, ix < len(xs) - 1)
        weight = (wy[:, None] * wx[None, :])[..., None]
        if acc is None:
          acc = np.zeros((b, frames.shape[1], h * s, w * s, 3), np.float32)
        region = (slice(None), slice(None), slice(y0 * s, y0 * s + th), slice(x0 * s, x0 * s + tw))
        acc[region] += frames * weight
        norm[region[2:]] += weight
    out.append(acc / norm)
  return np.concatenate(out, axis=1)
