"""Learned, temporally aware super-resolution (x2, x4): the model, its input and its weights.

The model predicts a residual on top of bicubic upscaling from each frame *and its neighbours*
(frames t-1, t, t+1 stacked on channels), so it can use detail that moves between frames and
keeps the upscaled clip as steady as its input:

    lr [B, T, h, w, 3] -> bicubic(lr_t) + depth_to_space(conv_net(lr_{t-1}, lr_t, lr_{t+1}))

In training its input is a random degradation of a high-resolution clip
(`vdm.post.degradations.random_degrade`: blur, one of four downscaling kernels, noise, JPEG-like
compression, 8 bits; models trained before that saw `degrade`, the bicubic downscale). Training is the `sr` task of `vdm train` (`vdm.train.upscaler`: `vdm train --config
configs/sr.py:2 --workdir W` trains and exports W/model); the post pipeline runs it as
`upscale(2, method=learned)` (`vdm.post.upscale`; default weights: checkpoints/sr_x2,
checkpoints/sr_x4).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
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


def build(config: ml_collections.ConfigDict, seed: int = 0) -> TemporalSR:
  m = config.model
  return TemporalSR(config.factor, width=m.width, blocks=m.blocks, neighbours=m.neighbours,
                    rngs=nnx.Rngs(seed))


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
  if config.get("task") != "sr" or "model" not in config:
    raise ValueError(f"{model_dir!r} is not an upscaler directory: its config.json is the "
                     f"{config.get('name', 'unnamed')!r} model's; use checkpoints/sr_x2 or "
                     "train one with `vdm train --config configs/sr.py:2`")
  abstract = nnx.eval_shape(lambda: build(config))
  return load_params(abstract, os.path.join(os.path.abspath(model_dir), "params"))


def default_model_dir(factor: int) -> str:
  return os.path.join(CHECKPOINTS, f"sr_x{factor}")


# Self-ensemble sizes (`predict`'s `ensemble`): the first k of the eight flips and transposes of
# the frame plane, in this order: none, left-right, up-down, both, then each of those transposed.
ENSEMBLES = (1, 2, 4, 8)


def dihedral(x: jax.Array, k: int, inverse: bool = False) -> jax.Array:
  """The k-th (0-7) flip/transpose of frames [..., h, w, C] (bits: 1 left-right, 2 up-down, 4
  transpose), or its inverse: the flips commute with each other, the transpose comes last."""
  flips = [a for bit, a in ((1, -2), (2, -3)) if k & bit]
  if inverse and k & 4:
    x = jnp.swapaxes(x, -3, -2)
  for axis in flips:
    x = jnp.flip(x, axis)
  if not inverse and k & 4:
    x = jnp.swapaxes(x, -3, -2)
  return x


@functools.partial(jax.jit, static_argnums=(0, 3))
def _predict_moved(graphdef, state, lr: jax.Array, k: int) -> jax.Array:
  """The model on the k-th flip/transpose of lr [T, h, w, 3], mapped back (not clipped)."""
  return dihedral(nnx.merge(graphdef, state)(dihedral(lr, k)[None])[0], k, inverse=True)


def predict(graphdef, state, lr: jax.Array, ensemble: int = 1) -> jax.Array:
  """The model `graphdef`/`state` (`nnx.split` of a TemporalSR) on one clip lr [T, h, w, 3] in
  [0, 1] -> [T, h * f, w * f, 3], clipped to [0, 1].

  ensemble (1, 2, 4 or 8): the mean of the model's outputs over that many flips and transposes
  of the frames, each mapped back (the "self-ensemble" of Lim et al. 2017, EDSR+). A conv net
  is not flip-equivariant, so its errors differ between flips and partly average out; bicubic,
  its base, is equivariant, so the mean changes only the residual. Costs `ensemble` forwards,
  run one after another (one program each) so memory stays that of one.
  """
  total = _predict_moved(graphdef, state, lr, 0)
  for k in range(1, ensemble):
    total = total + _predict_moved(graphdef, state, lr, k)
  return jnp.clip(total / ensemble, 0.0, 1.0)
