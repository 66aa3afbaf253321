"""Wan2.1-T2V-1.3B at its real size with random weights, through vdm's own pipeline.

Two figures, bf16 weights (the VAE's fp32) and bf16 matmul inputs in the DiT's blocks (fp32
accumulation; `dit.matmul_dtype`):
  * one video: 480x832, 81 frames, 50 UniPC steps with classifier-free guidance (Wan's
    defaults): UMT5-XXL on the prompt and negative prompt, the DiT (2 passes a step), the VAE
    decode; seconds per video (the first call, with compilation, apart) and peak device memory.
    Reference: Wan's own 1.3B on one RTX 4090, about 4 minutes and 8.19 GB (its README, with
    `--offload_model True --t5_cpu`).
  * the autoregressive chunk latency of a Self-Forcing-style generator (same shapes): chunks of
    3 latent frames with the KV cache, its 4 steps (`consistency` sampler, levels 1, 0.9375,
    0.8333, 0.625), no guidance, each chunk decoded as it is ready; seconds per chunk and frames
    per second (a later chunk is 12 frames). Reference: Self-Forcing reports 17 FPS on one H100.

  python -m benchmarks wan [--repeats N] [--attention-kernel xla|cudnn] [--tiny]

The weights are random (drawn in bf16, one tensor at a time, as a checkpoint would load), so the
video is noise; the work is the real model's. --tiny runs configs/wan.py:tiny at 32x32 on CPU
(the smoke test; `tests/test_benchmarks.py`). benchmarks/gpu.sh runs this on a lent GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import timed, write
from vdm.config import load_config
from vdm.convert.assemble import materialize, param_shapes
from vdm.convert.wan import LATENTS_MEAN, LATENTS_STD, generator_sampling
from vdm.generate.pipeline import Pipeline, Request
from vdm.models import build_denoiser, build_vae
from vdm.text.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Any sentencepiece model with T5's ids serves: the prompt is padded to 512 tokens either way.
SPIECE = os.path.join(ROOT, "tests", "fixtures", "wan", "diffusers", "tokenizer", "spiece.model")
PROMPT = "a red fox runs across the snow in slow motion under a blue sky"
FULL = dict(config="configs/wan.py:t2v-1.3b", height=480, width=832, frames=81, steps=50)
TINY = dict(config="configs/wan.py:tiny", height=32, width=32, frames=13, steps=2)


def random_weights(build, seed: int, dtype=jnp.bfloat16):
  """The module `build()` makes, its parameters drawn at random straight in `dtype` on the
  default device, one tensor at a time (no float32 copy of the model ever exists)."""
  abstract = nnx.eval_shape(build)
  key = jax.random.key(seed)
  recipes = {name: (lambda k=jax.random.fold_in(key, i), shape=shape:
                    0.02 * jax.random.normal(k, shape, dtype))
             for i, (name, shape) in enumerate(param_shapes(abstract))}
  return materialize(abstract, recipes, where="random weights")


def peak_memory_gib() -> float:
  """Peak device memory in use so far (GiB; 0 where the backend does not say, e.g. CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use", 0) / 2 ** 30


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks wan")
  parser.add_argument("--repeats", type=int, default=1, help="timed videos after the first")
  parser.add_argument("--attention-kernel", default=None, choices=("xla", "cudnn"),
                      help="dit.attention_kernel (default: cudnn on GPU, else xla)")
  parser.add_argument("--tiny", action="store_true", help="toy size (CPU smoke test)")
  args = parser.parse_args(argv)
  s = TINY if args.tiny else FULL
  kernel = args.attention_kernel or ("cudnn" if jax.default_backend() == "gpu" else "xla")
  config = load_config(s["config"], ["dit.matmul_dtype=bfloat16",
                                     f"dit.attention_kernel={kernel}"])
  tokenizer = Tokenizer.load(SPIECE)
  vocab = config.text.vocab_rows or tokenizer.vocab_size
  denoiser = random_weights(lambda: build_denoiser(config, vocab), seed=1)
  vae = random_weights(lambda: build_vae(config), seed=2, dtype=jnp.float32)  # 0.5 GB; its
  # convolutions want one dtype for input and kernel
  c = config.vae.latent_channels
  stats = dict(mean=jnp.asarray(LATENTS_MEAN[:c]), std=jnp.asarray(LATENTS_STD[:c]))
  loaded_gib = peak_memory_gib()

  # One video with Wan's defaults.
  pipe = Pipeline(config, tokenizer, vae, denoiser, stats)
  video = Request(prompt=PROMPT, negative_prompt=config.sample.negative_prompt, seed=0,
                  frames=s["frames"], fps=16, height=s["height"], width=s["width"],
                  steps=s["steps"], guidance=5.0, mode="parallel", sampler="unipc")
  first, times = timed(lambda: pipe.generate(video), args.repeats)
  rows = [dict(what=f"video {s['height']}x{s['width']}x{s['frames']}, {s['steps']} steps, CFG",
               first_s=first, best_s=min(times), median_s=statistics.median(times),
               per_step_s=min(times) / s["steps"], peak_mem_gib=peak_memory_gib())]

  # The same weights as a Self-Forcing generator: 3-frame chunks, 4 steps, KV cache, no CFG.
  ar_config = config.copy_and_resolve_references()
  generator_sampling(ar_config, "self-forcing")
  ar = Pipeline(ar_config, tokenizer, vae, denoiser, stats)
  request = Request(prompt=PROMPT, negative_prompt="", seed=0, frames=s["frames"], fps=16,
                    height=s["height"], width=s["width"], steps=4, guidance=1.0,
                    mode="autoregressive", sampler="consistency", chunk=3,
                    window=ar.vae.latent_frames(s["frames"]))
  chunk_times = []
  for _ in range(1 + args.repeats):  # the first pass compiles
    marks = [time.perf_counter()]
    ar.generate(request, on_frames=lambda frames: marks.append(time.perf_counter()))
    chunk_times.append([b - a for a, b in zip(marks, marks[1:])])
  later = [t for run_times in chunk_times[1:] for t in run_times[1:]]  # steady-state chunks
  chunk_s = statistics.median(later) if later else float("nan")
  frames_per_chunk = 3 * config.vae.temporal_downsample
  rows.append(dict(what="AR chunk (3 latent frames, 4 steps, KV cache, no CFG)",
                   first_s=sum(chunk_times[0]), best_s=min(later) if later else float("nan"),
                   median_s=chunk_s, per_step_s=chunk_s / 4, peak_mem_gib=peak_memory_gib()))
  write("wan" + ("_tiny" if args.tiny else ""), rows,
        dict(config=s["config"], shape=s, attention_kernel=kernel, weights="random, bf16",
             weights_loaded_gib=loaded_gib, ar_frames_per_second=frames_per_chunk / chunk_s,
             device=str(jax.devices()[0])))
