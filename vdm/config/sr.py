"""The learned upscaler's config (`task = 'sr'`, configs/sr.py): every field once, and the rules
between them. Its data section names frames by aspect and short side."""
from __future__ import annotations

from vdm.config.fields import Check, Field, integer, number, one_of, require, text
from vdm.config.t2v import (SEED, check_accumulate, check_parallel, clip_fields, parallel_fields,
                            stage)
from vdm.data.aspect_ratios import ASPECTS
from vdm.data.kinds import DATA_KINDS

POSITIVE = integer(1)
NON_NEGATIVE = integer(0)

# Downscaling kernels the training degradations draw from (vdm.post.degradations.KERNELS maps each
# to its resize method; named here so the config does not import the post package).
DOWNSCALE_KERNELS = ("area", "bilinear", "bicubic", "lanczos")


def kernel_tuple() -> Check:
  """A non-empty tuple (or JSON list) of downscaling kernel names."""
  return Check(lambda v: isinstance(v, (tuple, list)) and len(v) > 0
               and all(k in DOWNSCALE_KERNELS for k in v),
               f"a non-empty tuple of {DOWNSCALE_KERNELS}")

SCHEMA = dict(
    name=Field("sr_x2", "the run's name", text()),
    task=Field("sr", "what `vdm train` trains: 't2v' text to video, 'sr' the learned upscaler, "
               "'distill' a few-step student of a t2v model", one_of(("t2v", "sr", "distill"))),
    seed=Field(0, "seed of model init and training randomness", SEED),
    factor=Field(2, "upscaling factor", integer(2, 4)),
    data=dict(
        kind=Field("photo_pans", "the dataset (vdm.data.kinds)",
                   one_of(lambda: tuple(DATA_KINDS))),
        aspect=Field("1:1", "aspect ratio of the high-resolution clips",
                     one_of(tuple(ASPECTS))),
        short_side=Field(64, "short side of the high-resolution clips", POSITIVE),
        **clip_fields(frames=8, num_train=3000, num_test=64, long_factor=2, num_long=2),
    ),
    loss=dict(
        temporal_weight=Field(1.0, "weight of the error in frame-to-frame change, so the "
                              "upscaler adds no flicker of its own", number(0.0, 100.0),
                              legacy=0.0),
        input_noise=Field(2.0, "max std (8-bit levels) of per-frame noise on the training input "
                          "only, so the model averages input flicker away",
                          number(0.0, 25.0), legacy=0.0),
    ),
    # The training input's random degradation chain (vdm.post.degradations.random_degrade): real
    # low-resolution footage comes from resizers, blur, noise and codecs the model never saw.
    degrade=dict(
        kernels=Field(DOWNSCALE_KERNELS, "downscaling kernels drawn from, one per clip",
                      kernel_tuple(), legacy=("bicubic",)),
        blur=Field(1.0, "max sigma (high-resolution pixels) of the Gaussian blur before "
                   "downscaling, drawn per clip", number(0.0, 5.0), legacy=0.0),
        jpeg=Field(0.5, "probability that a clip is JPEG-compressed after downscaling",
                   number(0.0, 1.0), legacy=0.0),
        jpeg_quality=Field(30.0, "lowest JPEG quality drawn (uniform up to 95)",
                           number(1.0, 95.0)),
        shuffle=Field(0.5, "share of training clips whose frames are put in random order, so "
                      "the model uses a neighbouring frame only where it matches (real footage "
                      "moves faster than the photo pans)", number(0.0, 1.0), legacy=0.0),
        chroma=Field(0.75, "probability that a JPEG-compressed clip's chroma is coded at half "
                     "resolution (4:2:0, as most JPEGs and nearly all video)", number(0.0, 1.0),
                     legacy=0.0),
        clean=Field(0.0, "share of training clips that are only downscaled and noised (no blur, "
                    "no compression): clean resizes are common, and a model trained on softened "
                    "input alone smooths fine texture", number(0.0, 1.0)),
    ),
    model=dict(
        width=Field(32, "channels", POSITIVE),
        blocks=Field(4, "residual blocks", POSITIVE),
        neighbours=Field(1, "frames on either side the model sees", NON_NEGATIVE),
    ),
    parallel=parallel_fields(),
    train=stage(steps=1500, batch_size=4, learning_rate=1e-3, warmup_steps=50, ema_decay=0.99,
                checkpoint_every=250),
)


def validate(config) -> None:
  """The rules between fields of an upscaler config."""
  check_parallel(config)
  check_accumulate(config.train, "train")
  require(config.train.precision == "float32", "train.precision", config.train.precision,
          "'float32' (mixed precision is for the text encoder and the denoiser)")
  require(config.factor in (2, 4), "factor", config.factor, "2 or 4")
  require(config.data.short_side % (2 * config.factor) == 0, "data.short_side",
          config.data.short_side, f"a multiple of {2 * config.factor} (2 x factor)")
