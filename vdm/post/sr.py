"""Learned, temporally aware super-resolution (x2, x4) and its training task.

The model predicts a residual on top of bicubic upscaling from each frame *and its neighbours*
(frames t-1, t, t+1 stacked on channels), so it can use detail that moves between frames and
keeps the upscaled clip as steady as its input:

    lr [B, T, h, w, 3] -> bicubic(lr_t) + depth_to_space(conv_net(lr_{t-1}, lr_t, lr_{t+1}))

Training goes through the one training loop (`vdm.train.loop.train`) on natural-image clips
(real photos under a hand-held camera, vdm/data/photo_pans.py; or the synthetic scenes:
configs/sr.py): a high-resolution clip, its bicubic (antialiased) downscale quantised to 8 bits
as the input, MSE to the original plus a weighted MSE of the frame-to-frame change. `vdm train
--config configs/sr.py:2 --workdir W` trains and exports W/model; the post pipeline uses it as
`upscale(2, method=learned)` (default weights: checkpoints/sr_x2, checkpoints/sr_x4).
"""
from __future__ import annotations

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

FACTORS = (2, 4)
CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "checkpoints")


class TemporalSR(nnx.Module):
  """x`factor` upscaler of frames in [0, 1]: [B, T, h, w, 3] -> [B, T, h*f, w*f, 3]."""

  def __init__(self, factor: int, *, width: int = 32, blocks: int = 4, neighbours: int = 1,
               rngs: nnx.Rngs):
    if factor not in FACTORS:
      raise ValueError(f"sr factor must be one of {FACTORS}, got {factor!r}")
    self.factor, self.neighbours = factor, neighbours
    conv = lambda i, o, **kw: nnx.Conv(i, o, (3, 3), padding="SAME", rngs=rngs, **kw)  # noqa
    self.conv_in = conv(3 * (2 * neighbours + 1), width)
    self.blocks = nnx.List([nnx.List([conv(width, width), conv(width, width)])
                            for _ in range(blocks)])
    # Zero-initialised output: training starts from plain bicubic upscaling.
    self.conv_out = conv(width, 3 * factor * factor, kernel_init=nnx.initializers.zeros)

  def __call__(self, lr: jax.Array) -> jax.Array:
    b, t, h, w, c = lr.shape
    n, f = self.neighbours, self.factor
    padded = jnp.concatenate([jnp.repeat(lr[:, :1], n, 1), lr, jnp.repeat(lr[:, -1:], n, 1)], 1)
    stacked = jnp.concatenate([padded[:, i:i + t] for i in range(2 * n + 1)], axis=-1)
    x = nnx.relu(self.conv_in(stacked.reshape(b * t, h, w, -1)))
    for conv1, conv2 in self.blocks:
      x = x + conv2(nnx.relu(conv1(x)))
    residual = self.conv_out(x).reshape(b * t, h, w, f, f, c)
    residual = residual.transpose(0, 1, 3, 2, 4, 5).reshape(b, t, h * f, w * f, c)
    return bicubic(lr, f) + residual


def bicubic(frames: jax.Array, factor: int) -> jax.Array:
  """Bicubic upscaling of [B, T, h, w, C] by an integer factor (no clipping)."""
  b, t, h, w, c = frames.shape
  return jax.image.resize(frames, (b, t, h * factor, w * factor, c), "cubic", antialias=False)


def degrade(hr: jax.Array, factor: int, *, noise_std: jax.Array | float = 0.0,
            rng: jax.Array | None = None) -> jax.Array:
  """The input an upscaler sees: antialiased bicubic downscale of [B, T, H, W, C] in [0, 1],
  plus (in training) Gaussian noise of noise_std [B] or scalar, in 8-bit levels, fresh in every
  frame, then quantised to 8 bits as a decoded video is."""
  b, t, h, w, c = hr.shape
  lr = jax.image.resize(hr, (b, t, h // factor, w // factor, c), "cubic", antialias=True)
  if rng is not None:
    std = jnp.reshape(jnp.asarray(noise_std, lr.dtype), (-1, 1, 1, 1, 1)) / 255.0
    lr = lr + std * jax.random.normal(rng, lr.shape, lr.dtype)
  return jnp.round(jnp.clip(lr, 0.0, 1.0) * 255.0) / 255.0


def temporal_difference_mse(up: jax.Array, hr: jax.Array) -> jax.Array:
  """Mean squared error of the frame-to-frame change, [B, T, H, W, C] each: the flicker an
  upscaler adds (zero when its errors are the same in every frame)."""
  return jnp.mean(jnp.square(jnp.diff(up, axis=1) - jnp.diff(hr, axis=1)))


def sr_loss(model: TemporalSR, batch: dict, rng, *, temporal_weight: float = 0.0,
            input_noise: float = 0.0) -> tuple[jax.Array, dict]:
  """MSE of the upscaled degraded clip against the original, plus temporal_weight x the MSE of
  its frame-to-frame change; batch['video'] uint8 [B, T, H, W, 3].

  input_noise > 0: each clip's input gets fresh per-frame noise of a std drawn in
  [0, input_noise] levels while the target stays clean. Real low-resolution footage flickers
  (sensor, codec); without this the model learns to sharpen that flicker rather than average it
  away with the neighbouring frames.
  """
  hr = batch["video"].astype(jnp.float32) / 255.0
  r_std, r_noise = jax.random.split(rng)
  std = input_noise * jax.random.uniform(r_std, (hr.shape[0],))
  lr = degrade(hr, model.factor, noise_std=std, rng=r_noise if input_noise else None)
  up = model(lr)
  mse = jnp.mean(jnp.square(up - hr))
  temporal = temporal_difference_mse(up, hr)
  baseline = jnp.mean(jnp.square(jnp.clip(bicubic(lr, model.factor), 0, 1) - hr))
  return mse + temporal_weight * temporal, dict(mse=mse, temporal_mse=temporal,
                                                bicubic_mse=baseline)


def build(config: ml_collections.ConfigDict, seed: int = 0) -> TemporalSR:
  m = config.model
  return TemporalSR(config.factor, width=m.width, blocks=m.blocks, neighbours=m.neighbours,
                    rngs=nnx.Rngs(seed))


def run_sr_training(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Trains the upscaler through the one loop and exports WORKDIR/model; returns its path."""
  from vdm.data.pipeline import make_loader
  from vdm.data.scenes_builder import from_config
  from vdm.models import save_params
  from vdm.train.loop import train
  from vdm.provenance import write_provenance
  builder = from_config(config.data, config.data.data_dir or os.path.join(workdir, "data"))
  loss_cfg = config.get("loss", {})
  loss_fn = functools.partial(sr_loss, temporal_weight=float(loss_cfg.get("temporal_weight", 0.0)),
                              input_noise=float(loss_cfg.get("input_noise", 0.0)))
  model = train(build(config, config.seed), loss_fn,
                make_loader(builder, "train", batch_size=config.train.batch_size,
                            seed=config.seed),
                config.train, os.path.join(workdir, "sr"), seed=config.seed,
                prepare_batch=lambda batch: dict(video=batch["video"]), desc="sr")
  model_dir = os.path.join(workdir, "model")
  shutil.rmtree(model_dir, ignore_errors=True)
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
  write_provenance(model_dir, config.seed)
  save_params(model, os.path.join(os.path.abspath(model_dir), "params"))
  return model_dir


@functools.lru_cache(maxsize=4)
def load(model_dir: str) -> TemporalSR:
  """Loads an exported upscaler (config.json + orbax params; nothing is executed)."""
  from vdm.config import config_from_json
  from vdm.models import load_params
  if not os.path.isfile(os.path.join(model_dir, "config.json")):
    raise FileNotFoundError(f"{model_dir!r} is not an upscaler directory (no config.json); "
                            "train one with `vdm train --config configs/sr.py:2`")
  with open(os.path.join(model_dir, "config.json")) as f:
    config = config_from_json(f.read())
  abstract = nnx.eval_shape(lambda: build(config))
  return load_params(abstract, os.path.join(os.path.abspath(model_dir), "params"))


def default_model_dir(factor: int) -> str:
  return os.path.join(CHECKPOINTS, f"sr_x{factor}")


def upscale_learned(frames: np.ndarray, factor: int, model_dir: str = "", *,
                    steady: float = 0.0, steady_tolerance: float = 0.015,
                    chunk: int = 16) -> np.ndarray:
  """Upscales frames [T, H, W, 3] (uint8 or float in [0, 1]) with a trained model; the output
  has the input's dtype. Chunks overlap by one frame each side so every frame sees its
  neighbours, as in training.

  steady > 0: the result's frame-to-frame change follows bicubic's wherever bicubic's pixels
  are still (`vdm.post.steady`), so the model's sharpening of the input's per-frame noise does
  not show as flicker; 0 returns the model's output as it is.
  """
  from vdm.post import common, steady as steady_lib
  from vdm.post.upscale import upscale
  model = load(model_dir or default_model_dir(factor))
  if model.factor != factor:
    raise ValueError(f"upscale: model {model_dir!r} is x{model.factor}, asked for x{factor}")
  graphdef, state = nnx.split(model)
  halo = model.neighbours

  def fn(x):
    return _apply(graphdef, state, x)[halo:x.shape[0] - halo]

  out = common.map_chunks(fn, frames, chunk, halo=halo)
  if steady == 0:
    return out
  # The reference: the classical bicubic upscale, the model's own base before its residual.
  reference = upscale(frames, factor, method="bicubic", chunk=chunk)
  return steady_lib.follow_reference(out, reference, steady, steady_tolerance, chunk=chunk)


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x):
  return jnp.clip(nnx.merge(graphdef, state)(x[None])[0], 0.0, 1.0)
