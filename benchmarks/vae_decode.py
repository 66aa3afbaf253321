"""Causal VAE decoding: whole clip at once vs chunked (`vdm.vae.chunked`), against clip length.

  python -m benchmarks vae_decode [--frames 17,33,65,129,257] [--size 64] [--chunk 4]

Peak memory is what XLA plans for the compiled decode (arguments + outputs + temporaries):
for the whole clip it grows with the clip; chunked decoding runs one fixed-size program (the
chunk plus `decoder_lookback` latent frames of context) however long the clip, so it stays flat.
Times are the best of the repeats, compilation excluded.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from benchmarks.common import write
from benchmarks.frames import _peak_bytes
from vdm.vae.chunked import decode_chunks, decoder_lookback
from vdm.vae.model import CausalVAE


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks vae_decode")
  parser.add_argument("--frames", default="17,33,65,129,257")
  parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
  parser.add_argument("--chunk", type=int, default=4, help="latent frames per chunk")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--tiny", action="store_true")
  args = parser.parse_args(argv)
  vae = CausalVAE(base_channels=8 if args.tiny else 16, channel_mult=(1, 2, 2),
                  latent_channels=8, temporal_downsample=2, rngs=nnx.Rngs(0))
  lookback = decoder_lookback(vae)
  decode = jax.jit(vae.decode)
  s = args.size // vae.spatial_downsample
  rows = []
  for frames in (int(f) for f in args.frames.split(",")):
    latents = vae.latent_frames(frames)
    z = jax.random.normal(jax.random.key(0), (1, latents, s, s, 8))
    whole = decode.lower(z).compile()
    window = min(latents, args.chunk + lookback)
    chunked_program = decode.lower(z[:, :window]).compile()
    best = {}
    for name, fn in (("whole", lambda: whole(z).block_until_ready()),
                     ("chunked", lambda: [np.asarray(c) for c in decode_chunks(
                         decode, z, chunk=args.chunk, lookback=lookback,
                         temporal_downsample=2)])):
      fn()
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
      best[name] = min(times)
    rows.append(dict(frames=frames, latent_frames=latents, whole_s=best["whole"],
                     chunked_s=best["chunked"], whole_peak_mb=_peak_bytes(whole) / 2**20,
                     chunked_peak_mb=_peak_bytes(chunked_program) / 2**20))
  write("vae_decode" + ("_tiny" if args.tiny else ""), rows,
        dict(size=args.size, chunk=args.chunk, lookback=lookback, repeats=args.repeats,
             backend=jax.default_backend()))
