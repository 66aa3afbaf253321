"""Named VAE sizes (configs/vae_sizes.py): compression factors, latent shapes, parameter counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import load_config
from vdm.vae.model import CausalVAE, param_count

# name -> (temporal, spatial, latent channels)
COMPRESSION = {"tiny": (2, 2, 8), "spine": (2, 4, 8), "wan": (4, 8, 16), "ltx": (8, 32, 128)}


def vae_config(name, **overrides):
  cfg = load_config(f"configs/vae_sizes.py:{name}")  # also runs the full validation
  cfg.vae.update(overrides)
  return cfg.vae


def abstract_vae(cfg):
  return nnx.eval_shape(lambda: CausalVAE.from_config(cfg, rngs=nnx.Rngs(0)))


def built_params(model) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("name", list(COMPRESSION))
def test_compression_and_parameter_count(name):
  cfg = vae_config(name)
  model = abstract_vae(cfg)
  td, s, c = COMPRESSION[name]
  assert (model.temporal_downsample, model.spatial_downsample, model.latent_channels) == (td, s, c)
  formula = param_count(base_channels=cfg.base_channels, channel_mult=cfg.channel_mult,
                        latent_channels=cfg.latent_channels,
                        temporal_downsample=cfg.temporal_downsample,
                        num_res_blocks=cfg.num_res_blocks)
  assert built_params(model) == formula


def test_ltx_compresses_pixel_values_192x():
  td, s, c = COMPRESSION["ltx"]
  assert td * s * s * 3 / c == 192


@pytest.mark.parametrize("name, frames", [("wan", (1, 5, 9, 17)), ("ltx", (1, 9, 17, 25))])
def test_latent_shapes_for_one_plus_k_frames(name, frames):
  cfg = vae_config(name)
  model = abstract_vae(cfg)
  td, s, c = COMPRESSION[name]
  for t in frames:
    video = jax.ShapeDtypeStruct((1, t, 64, 64, 3), jnp.float32)
    mean, _ = nnx.eval_shape(lambda m, v: m.encode(v), model, video)
    assert mean.shape == (1, 1 + (t - 1) // td, 64 // s, 64 // s, c)
    assert nnx.eval_shape(lambda m, z: m.decode(z), model, mean).shape == video.shape
  with pytest.raises(ValueError, match="num_frames"):
    model.latent_frames(1 + td // 2)


@pytest.mark.parametrize("name", ["wan", "ltx"])
def test_round_trip_at_tiny_width(name):
  cfg = vae_config(name, base_channels=2, num_res_blocks=1)
  model = CausalVAE.from_config(cfg, rngs=nnx.Rngs(0))
  td, s, c = COMPRESSION[name]
  video = jax.random.uniform(jax.random.key(0), (1, 1 + 2 * td, s, s, 3), minval=-1, maxval=1)
  mean, logvar = model.encode(video)
  assert mean.shape == logvar.shape == (1, 3, 1, 1, c)
  recon = model.decode(mean)
  assert recon.shape == video.shape and bool(jnp.all(jnp.isfinite(recon)))
