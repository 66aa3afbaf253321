"""Causal VAE decoding: whole clip at once vs chunked with cached causal-conv state, against length.

  python -m benchmarks vae_decode [--frames 17,33,65,129,257] [--size 64] [--chunk 4]

Peak memory is what XLA plans for the compiled program (arguments + outputs + temporaries): for
the whole clip it grows with the clip; chunked decoding (`CausalVAE.decode_step`) runs two
fixed-size programs, the first chunk's and every later chunk's, each carrying a cache of a few
frames per causal conv, so it stays flat however long the clip. Each latent frame is decoded once
(no recomputed context), so chunked time should track the whole-clip time. Times are the best of
the repeats, compilation excluded; the chunked time includes copying each chunk to the host, as a
streaming writer would.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from benchmarks.common import write
from benchmarks.frames import _peak_bytes
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
  graphdef, state = nnx.split(vae)
  decode = jax.jit(lambda state, z: nnx.merge(graphdef, state).decode(z))
  step = jax.jit(lambda state, z, cache: nnx.merge(graphdef, state).decode_step(z, cache))
  s = args.size // vae.spatial_downsample
  rows = []
  for frames in (int(f) for f in args.frames.split(",")):
    latents = vae.latent_frames(frames)
    z = jax.random.normal(jax.random.key(0), (1, latents, s, s, 8))
    whole = decode.lower(state, z).compile()
    chunk = min(args.chunk, latents)
    first = step.lower(state, z[:, :chunk], None).compile()
    cache = jax.eval_shape(step, state, z[:, :chunk], None)[1]
    later = step.lower(state, z[:, :chunk], cache).compile()
    chunked_peak = max(_peak_bytes(first), _peak_bytes(later))

    def chunked():
      cache = None
      for start in range(0, latents, chunk):
        frames_out, cache = step(state, z[:, start:start + chunk], cache)
        np.asarray(frames_out)

    best = {}
    for name, fn in (("whole", lambda: np.asarray(whole(state, z))), ("chunked", chunked)):
      fn()
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
      best[name] = min(times)
    rows.append(dict(frames=frames, latent_frames=latents, whole_s=best["whole"],
                     chunked_s=best["chunked"], whole_peak_mb=_peak_bytes(whole) / 2**20,
                     chunked_peak_mb=chunked_peak / 2**20))
  write("vae_decode" + ("_tiny" if args.tiny else ""), rows,
        dict(size=args.size, chunk=args.chunk, repeats=args.repeats, method="cached",
             backend=jax.default_backend()))
