"""Tiled spatial decoding: large frames decoded in overlapping latent tiles, seams blended.

A tile decoded on its own differs from the whole decode in two ways: near its borders the
spatial convolutions see 'SAME' zero padding instead of its neighbours, and with `vae.norm =
'group'` every GroupNorm takes its statistics over the tile instead of the whole frame.

  * vae.norm = 'rms' (per-position norm): the first is the only difference, and it reaches no
    further than `decoder_reach(vae)` latent pixels in from a tile's edge. With `margin` >= that
    reach (each tile leaves out that many latent pixels at its inner edges before its blend ramp
    starts; overlap > 2 * margin), tiled decoding equals the whole decode to float rounding.
  * vae.norm = 'group': the statistics differ wherever a tile's content differs from the frame's
    (a tile of plain background), so tiling is an approximation that trades quality for memory;
    overlap and linear cross-fades hide the seams. Measured on the shipped VAE in
    tests/test_vae_tiled.py.
Temporal chunking is exact either way. A single tile covering the frame is the whole decode, bit
for bit. With `chunk`, memory is bounded by one tile of one chunk, whatever the frame size and
clip length.
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


def blend_ramp(length: int, ramp: int, lead: bool, trail: bool, skip: int = 0) -> np.ndarray:
  """Weights [length] in [0, 1]: 0 over the first `skip` positions and rising linearly over the
  next `ramp` if `lead` (a tile overlaps this one before it), the mirror image at the end if
  `trail`, 1 elsewhere."""
  i = np.arange(length, dtype=np.float32) + 0.5
  w = np.ones(length, np.float32)
  if ramp > 0 and lead:
    w = np.minimum(w, np.clip((i - skip) / ramp, 0.0, 1.0))
  if ramp > 0 and trail:
    w = np.minimum(w, np.clip((length - skip - i) / ramp, 0.0, 1.0))
  return w


def decoder_reach(vae: CausalVAE) -> int:
  """How many latent pixels away a latent can change a decoded pixel (norm='rms'; with 'group'
  the whole frame does, through the statistics). Walks the decoder back from its output: a 3x3
  conv widens the dependence by 1 pixel of its level, nearest x2 upsampling halves it (rounded
  up). Checked against a perturbed decode in tests/test_vae_tiled.py."""
  dec = vae.decoder
  levels = len(dec.ups) + 1
  reach = 1  # conv_out
  for i in range(levels):  # from the full-resolution level down to the latent one
    reach += 2 * dec.num_res_blocks  # two 3x3 convs per residual block
    if i < levels - 1:
      up = dec.ups[len(dec.ups) - 1 - i]  # the upsample into this level
      reach = -(-(reach + 1) // 2)  # its conv, then back through nearest x2
      reach += 1 if up.to_time is not None else 0  # the depth-to-time conv at the low level
  return reach + 2 + 1  # mid block, conv_in


def decode_tiled(vae: CausalVAE, z: jax.Array, *, tile: int, overlap: int, margin: int = 0,
                 chunk: int | None = None) -> np.ndarray:
  """Decodes z [B, T', h, w, C] in spatial tiles -> video [B, T, h*s, w*s, 3] (float32).

  Args:
    tile: tile side in latent pixels (tiles are tile x tile, clipped to the frame).
    overlap: latent pixels neighbouring tiles share, cross-faded over (overlap - 2 margin) * s
      pixels; 0 <= overlap < tile.
    margin: latent pixels at a tile's inner edges that get no weight (the zone the padding
      reaches); `decoder_reach(vae)` makes an 'rms'-norm VAE's tiling exact. 2 margin < overlap
      when margin > 0.
    chunk: if set, each tile is also decoded `chunk` latent frames at a time with the cached
      causal decoder (`CausalVAE.decode_step`), so memory is bounded in time as well.
  """
  if tile < 1:
    raise ValueError(f"tile must be >= 1 latent pixel, got {tile}")
  if not 0 <= overlap < tile:
    raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
  if margin < 0 or (margin > 0 and 2 * margin >= overlap):
    raise ValueError(f"margin must be >= 0 with 2 * margin < overlap={overlap}, got {margin}")
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
        ramp, skip = (overlap - 2 * margin) * s, margin * s
        wy = blend_ramp(th, ramp, iy > 0, iy < len(ys) - 1, skip)
        wx = blend_ramp(tw, ramp, ix > 0, ix < len(xs) - 1, skip)
        weight = (wy[:, None] * wx[None, :])[..., None]
        if acc is None:
          acc = np.zeros((b, frames.shape[1], h * s, w * s, 3), np.float32)
        region = (slice(None), slice(None), slice(y0 * s, y0 * s + th), slice(x0 * s, x0 * s + tw))
        acc[region] += frames * weight
        norm[region[2:]] += weight
    out.append(acc / norm)
  return np.concatenate(out, axis=1)
