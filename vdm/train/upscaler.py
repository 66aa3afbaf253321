"""The learned upscaler's training: the `sr` task of `vdm train` (configs/sr.py).

Through the one training loop (`vdm.train.loop.train`) on natural-image clips (real photos
under a hand-held camera, vdm/data/photo_pans.py; or the synthetic scenes): a high-resolution
clip, a random degradation of it as the input (`vdm.post.degradations.random_degrade`: blur,
one of four downscaling kernels, noise, JPEG-like compression, 8-bit quantisation; the config's
`degrade` section), MSE to the original plus a weighted MSE of the frame-to-frame change.
`vdm train --config configs/sr.py:2 --workdir W` trains and exports W/model, which
`vdm.post.sr.load` reads.
"""
from __future__ import annotations

import functools
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections

from vdm.data.loader import make_loader
from vdm.data import kinds
from vdm.models import save_params
from vdm.parallel import distributed
from vdm.parallel.placement import Placement
from vdm.post import sr
from vdm.post.degradations import random_degrade
from vdm.provenance import write_provenance
from vdm.train.loop import train


def temporal_difference_mse(up: jax.Array, hr: jax.Array) -> jax.Array:
  """Mean squared error of the frame-to-frame change, [B, T, H, W, C] each: the flicker an
  upscaler adds (zero when its errors are the same in every frame)."""
  return jnp.mean(jnp.square(jnp.diff(up, axis=1) - jnp.diff(hr, axis=1)))


def shuffle_frames(rng: jax.Array, video: jax.Array, share: float) -> jax.Array:
  """video [B, T, ...] with the frames of about `share` of its clips put in a random order (a
  permutation per clip), the others as they are."""
  b, t = video.shape[:2]
  r_pick, r_order = jax.random.split(rng)
  orders = jax.vmap(lambda key: jax.random.permutation(key, t))(jax.random.split(r_order, b))
  picked = jax.random.bernoulli(r_pick, share, (b, 1))
  index = jnp.where(picked, orders, jnp.arange(t)[None])  # [B, T]
  return jnp.take_along_axis(video, index.reshape(b, t, *([1] * (video.ndim - 2))), axis=1)


def sr_loss(model: sr.TemporalSR, batch: dict, rng, *, temporal_weight: float = 0.0,
            input_noise: float = 0.0, degrade: dict | None = None) -> tuple[jax.Array, dict]:
  """MSE of the upscaled degraded clip against the original, plus temporal_weight x the MSE of
  its frame-to-frame change; batch['video'] uint8 [B, T, H, W, 3].

  input_noise > 0: each clip's input gets fresh per-frame noise of a std drawn in
  [0, input_noise] levels while the target stays clean. Real low-resolution footage flickers
  (sensor, codec); without this the model learns to sharpen that flicker rather than average it
  away with the neighbouring frames.

  degrade: the config's `degrade` section: `shuffle` (the share of clips whose frames are put
  in random order, `shuffle_frames`: real footage has fast motion, cuts and occlusions the
  smooth photo pans lack, so the model must learn to use a neighbouring frame only where it
  matches), then kernels, blur, jpeg, jpeg_quality, chroma and clean for `random_degrade`;
  None, or its legacy values (bicubic only, no blur, no JPEG), keeps the original input,
  `sr.degrade` with noise, so that runs made before the section resume with the same random
  numbers.
  """
  hr = batch["video"].astype(jnp.float32) / 255.0
  if degrade is not None and degrade["shuffle"] > 0:
    # Its own key, so shuffle = 0 draws the chain it drew before the field existed.
    hr = shuffle_frames(jax.random.fold_in(rng, 1), hr, float(degrade["shuffle"]))
  if degrade is None or (tuple(degrade["kernels"]) == ("bicubic",) and not degrade["blur"]
                         and not degrade["jpeg"]):
    r_std, r_noise = jax.random.split(rng)
    std = input_noise * jax.random.uniform(r_std, (hr.shape[0],))
    lr = sr.degrade(hr, model.factor, noise_std=std, rng=r_noise if input_noise else None)
  else:
    lr = random_degrade(rng, hr, model.factor, kernels=tuple(degrade["kernels"]),
                        blur=float(degrade["blur"]), noise=input_noise,
                        jpeg=float(degrade["jpeg"]),
                        jpeg_quality=float(degrade["jpeg_quality"]),
                        chroma=float(degrade["chroma"]),
                        clean=float(degrade["clean"]))
  up = model(lr)
  mse = jnp.mean(jnp.square(up - hr))
  temporal = temporal_difference_mse(up, hr)
  baseline = jnp.mean(jnp.square(jnp.clip(sr.bicubic(lr, model.factor), 0, 1) - hr))
  return mse + temporal_weight * temporal, dict(mse=mse, temporal_mse=temporal,
                                                bicubic_mse=baseline)


def run_sr_training(config: ml_collections.ConfigDict, workdir: str, *,
                    until: str = "export") -> str:
  """Trains the upscaler through the one loop and exports WORKDIR/model; returns its path.

  The `sr` task of `vdm train` (`vdm.train.run.TASKS`). It is one stage, so `until` (the
  text-to-video task's last stage) does not apply to it.
  """
  del until
  placement = Placement.from_config(config.parallel)  # the upscaler is data parallel only
  batch_size = config.train.batch_size
  placement.check_batch(batch_size, "train.batch_size", config.train.accumulate)
  builder = kinds.build(config.data, config.data.data_dir or os.path.join(workdir, "data"))
  loss_fn = functools.partial(sr_loss, temporal_weight=float(config.loss.temporal_weight),
                              input_noise=float(config.loss.input_noise),
                              degrade=config.degrade.to_dict())
  model = train(sr.build(config, config.seed), loss_fn,
                make_loader(builder, "train", batch_size=batch_size, seed=config.seed,
                            rows=placement.process_rows(batch_size)),
                config.train, os.path.join(workdir, "sr"), seed=config.seed,
                prepare_batch=lambda batch: dict(video=batch["video"]), desc="sr",
                placement=placement)
  model_dir = os.path.join(workdir, "model")
  if distributed.is_lead():
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
      f.write(config.to_json(indent=2))
    write_provenance(model_dir, config.seed)
  distributed.barrier("sr_export")
  save_params(model, os.path.join(os.path.abspath(model_dir), "params"))
  return model_dir
