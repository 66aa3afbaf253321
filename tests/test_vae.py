"""Tests for the causal 3D VAE: shapes, exact causality, first-frame independence, loss, learning."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vdm.config import section
from vdm.vae.loss import gaussian_kl, vae_loss
from vdm.vae.model import CausalVAE

H = W = 16


def tiny_vae(temporal_downsample=2, channel_mult=(1, 2), seed=0, norm="group"):
  return CausalVAE(base_channels=8, channel_mult=channel_mult, latent_channels=4,
                   temporal_downsample=temporal_downsample, num_res_blocks=1, norm=norm,
                   rngs=nnx.Rngs(seed))


def random_video(key, b, t, h=H, w=W):
  return jax.random.uniform(key, (b, t, h, w, 3), minval=-1.0, maxval=1.0)


def square_clips() -> np.ndarray:
  """Two uint8 clips [2, 5, 16, 16, 3]: a coloured square moving over a flat background."""
  v = np.zeros((2, 5, H, W, 3), np.uint8)
  v[0, :] = (30, 60, 120)
  v[1, :] = (200, 180, 40)
  for t in range(5):
    v[0, t, 4:10, 2 + 2 * t:8 + 2 * t] = (250, 40, 40)
    v[1, t, 3 + t:9 + t, 6:12] = (20, 200, 220)
  return v


@nnx.jit
def encode_mean(model, video):
  return model.encode(video)[0]


@nnx.jit
def decode(model, z):
  return model.decode(z)


# ---------------------------------------------------------------------------------------------
# Shapes and validation (abstract evaluation only: no compile, no compute).


@pytest.mark.parametrize("td,mult,frames", [
    (1, (1, 2), (1, 2, 5)),
    (2, (1, 2), (1, 3, 5, 9)),
    (4, (1, 2, 2), (1, 5, 9)),
    (8, (1, 2, 2, 2), (1, 9, 17)),  # three temporal steps
])
def test_encode_decode_shapes(td, mult, frames):
  model = tiny_vae(td, mult)
  s = 2 ** (len(mult) - 1)
  assert model.spatial_downsample == s and model.temporal_downsample == td
  for t in frames:
    video = jax.ShapeDtypeStruct((2, t, H, W, 3), jnp.float32)
    mean, logvar = nnx.eval_shape(lambda m, v: m.encode(v), model, video)
    t_lat = 1 + (t - 1) // td
    assert model.latent_frames(t) == t_lat and model.pixel_frames(t_lat) == t
    assert mean.shape == logvar.shape == (2, t_lat, H // s, W // s, 4)
    recon = nnx.eval_shape(lambda m, z: m.decode(z), model, mean)
    assert recon.shape == (2, t, H, W, 3)
    recon, _, _ = nnx.eval_shape(lambda m, v: m(v, rng=jax.random.key(0)), model, video)
    assert recon.shape == video.shape


def test_bad_inputs_raise_named_errors():
  model = tiny_vae(2, (1, 2))
  bad_t = jax.ShapeDtypeStruct((1, 4, H, W, 3), jnp.float32)
  with pytest.raises(ValueError, match="num_frames"):
    nnx.eval_shape(lambda m, v: m.encode(v), model, bad_t)
  with pytest.raises(ValueError, match="height"):
    nnx.eval_shape(lambda m, v: m.encode(v), model,
                   jax.ShapeDtypeStruct((1, 5, 15, W, 3), jnp.float32))
  with pytest.raises(ValueError, match="width"):
    nnx.eval_shape(lambda m, v: m.encode(v), model,
                   jax.ShapeDtypeStruct((1, 5, H, 9, 3), jnp.float32))
  with pytest.raises(ValueError, match="num_frames"):
    model.latent_frames(6)
  with pytest.raises(ValueError, match="temporal_downsample"):
    tiny_vae(3, (1, 2))
  with pytest.raises(ValueError, match="temporal_downsample"):
    tiny_vae(4, (1, 2))  # x4 in time needs two stride-2 levels
  with pytest.raises(ValueError, match="temporal_downsample"):
    tiny_vae(8, (1, 2, 2))  # x8 in time needs three
  with pytest.raises(ValueError, match="temporal_downsample"):
    tiny_vae(16, (1, 2, 2, 2, 2))


def test_from_config():
  cfg = section("vae", base_channels=8, channel_mult=(1, 2, 2), latent_channels=3,
                temporal_downsample=4, num_res_blocks=1)
  model = CausalVAE.from_config(cfg, rngs=nnx.Rngs(0))
  assert model.spatial_downsample == 4 and model.temporal_downsample == 4
  assert model.latent_frames(9) == 3


# ---------------------------------------------------------------------------------------------
# Causality: exact equality, since a frame that may not see the perturbation must not move at all.


@pytest.mark.parametrize("td,mult", [(2, (1, 2)), (4, (1, 2, 2)), (8, (1, 2, 2, 2))])
def test_encoder_is_causal(td, mult):
  model = tiny_vae(td, mult)
  t = 1 + 2 * td
  video = random_video(jax.random.key(1), 1, t)
  # Row k of the batch perturbs pixel frame k (row 0 is the clean reference).
  noise = jax.random.normal(jax.random.key(2), video.shape[2:])
  rows = [video[0]] + [video[0].at[k].add(noise) for k in range(1, t)]
  means = np.asarray(encode_mean(model, jnp.stack(rows)))
  for k in range(1, t):
    for j in range(means.shape[1]):
      diff = np.abs(means[k, j] - means[0, j]).max()
      if j * td < k:  # latent frame j sees pixel frames <= j * td only
        assert diff == 0.0, f"latent {j} moved when pixel frame {k} changed (td={td})"
      else:
        assert diff > 1e-6, f"latent {j} ignored pixel frame {k} (td={td})"


@pytest.mark.parametrize("td,mult", [(2, (1, 2)), (4, (1, 2, 2)), (8, (1, 2, 2, 2))])
def test_decoder_is_causal(td, mult):
  model = tiny_vae(td, mult)
  t_lat = 3
  z = jax.random.normal(jax.random.key(3), (1, t_lat, H // model.spatial_downsample,
                                            W // model.spatial_downsample, 4))
  rows = [z[0]] + [z[0].at[j].add(1.0) for j in range(t_lat)]
  out = np.asarray(decode(model, jnp.stack(rows)))
  for j in range(t_lat):
    first_pixel = 0 if j == 0 else 1 + (j - 1) * td  # first pixel frame latent j produces
    for f in range(out.shape[1]):
      diff = np.abs(out[1 + j, f] - out[0, f]).max()
      if f < first_pixel:
        assert diff == 0.0, f"pixel frame {f} moved when latent {j} changed (td={td})"
      else:
        assert diff > 1e-6, f"pixel frame {f} ignored latent {j} (td={td})"


def test_first_frame_is_encoded_and_decoded_on_its_own():
  model = tiny_vae(2, (1, 2))
  video = random_video(jax.random.key(4), 2, 5)
  full = encode_mean(model, video)
  alone = encode_mean(model, video[:, :1])
  assert alone.shape[1] == 1
  # Not bit-exact: XLA may order the conv sums differently for another T.
  np.testing.assert_allclose(alone[:, 0], full[:, 0], atol=1e-5)
  np.testing.assert_allclose(decode(model, full[:, :1])[:, 0], decode(model, full)[:, 0],
                             atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Loss and learning.


def test_gaussian_kl_closed_form():
  mean = jnp.array([0.0, 1.0, -2.0, 0.5])
  logvar = jnp.array([0.0, 0.0, jnp.log(4.0), -1.0])
  var = jnp.exp(logvar)
  expected = 0.5 * (mean**2 + var - 1.0 - logvar)
  np.testing.assert_allclose(gaussian_kl(mean, logvar), expected, rtol=1e-6)
  assert gaussian_kl(jnp.zeros(3), jnp.zeros(3)).sum() == 0.0


def test_loss_is_finite_and_differentiable():
  model = tiny_vae(2, (1, 2))
  batch = {"video": jnp.asarray(square_clips())}
  loss_fn = functools.partial(vae_loss, kl_weight=1e-3)
  (loss, metrics), grads = nnx.jit(
      lambda m, b, r: nnx.value_and_grad(loss_fn, has_aux=True)(m, b, r)
  )(model, batch, jax.random.key(0))
  assert np.isfinite(float(loss))
  assert {"recon_mse", "kl", "psnr", "recon_l1"} <= set(metrics)
  assert float(metrics["kl"]) >= 0.0
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("norm", ["group", "rms"])
def test_overfits_two_clips(norm):
  """An untrained model scores ~8 dB; predicting each clip's mean colour scores ~14 dB; 200 steps
  reach ~27 dB, with either norm (vae.norm)."""
  model = tiny_vae(2, (1, 2), norm=norm)
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  clips = square_clips()
  batch = {"video": jnp.asarray(clips)}

  @nnx.jit
  def train_step(model, optimizer, batch, rng):
    (_, metrics), grads = nnx.value_and_grad(vae_loss, has_aux=True)(model, batch, rng)
    optimizer.update(model, grads)
    return metrics

  x = clips.astype(np.float32) / 127.5 - 1.0
  mean_colour = x.mean(axis=(1, 2, 3), keepdims=True)
  baseline_psnr = 10 * np.log10(4.0 / np.mean((x - mean_colour) ** 2))

  rngs = jax.random.split(jax.random.key(0), 200)
  first = train_step(model, optimizer, batch, rngs[0])
  for rng in rngs[1:]:
    metrics = train_step(model, optimizer, batch, rng)
  psnr = float(metrics["psnr"])
  assert float(first["psnr"]) < 15.0
  assert psnr > 22.0 and psnr > baseline_psnr + 5.0, (psnr, baseline_psnr)
