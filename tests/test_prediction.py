"""Moving-MNIST 10 -> 10 prediction: extension training, the extension sampler over a batch, and
`vdm eval --suite prediction` end to end on a tiny model trained here (configs/moving_mnist.py)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm import cli
from vdm.config import ConfigError, load_config
from vdm.data import moving_mnist
from vdm.eval.metrics.prediction import PUBLISHED, prediction_scores
from vdm.generate.extension import encode_given, extend_latents, latent_split
from vdm.train.objectives import pin_given_frames

TINY = "configs/moving_mnist.py:tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A tiny moving_mnist model directory with random weights. The suite's mechanics do not depend
  on training, and tiny training costs ~30 s of compiling on this CPU; the training path is
  checked piecewise below (data, VAE crops, extension training) and by the real run (README)."""
  from flax import nnx

  from vdm.models import build_denoiser, build_vae, save_model_dir
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  config = load_config(TINY)
  captions = [moving_mnist.make_example(0, "train", i, size=32, frames=2)["caption"]
              for i in range(64)]
  tokenizer = Tokenizer(train_tokenizer(captions, vocab_size=config.text.vocab_size,
                                        model_type=config.text.tokenizer))
  denoiser = build_denoiser(config, tokenizer.vocab_size, 1)
  # adaLN-zero starts the DiT at velocity 0 everywhere; random weights make every path matter.
  graphdef, params, rest = nnx.split(denoiser, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(2)  # numpy: no program to compile per parameter shape
  leaves = [jnp.asarray(0.1 * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
  denoiser = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)
  channels = config.vae.latent_channels
  directory = str(tmp_path_factory.mktemp("mnist_tiny") / "model")
  save_model_dir(directory, config=config, tokenizer=tokenizer, vae=build_vae(config, 0),
                 denoiser=denoiser, latent_stats=dict(mean=np.zeros(channels),
                                                      std=np.ones(channels)))
  return directory


@pytest.fixture(scope="module")
def pipe(model_dir):
  import vdm
  return vdm.Pipeline.load(model_dir)


def test_pin_given_frames_levels_and_weights():
  levels = jnp.full((3, 5), 0.7)
  pinned, weights = pin_given_frames(jax.random.key(0), levels, 2, 1.0)
  np.testing.assert_array_equal(pinned[:, :2], 0.0)
  np.testing.assert_array_equal(pinned[:, 2:], levels[:, 2:])
  np.testing.assert_array_equal(weights, np.tile([0, 0, 1, 1, 1], (3, 1)))
  same, ones = pin_given_frames(jax.random.key(0), levels, 2, 0.0)
  np.testing.assert_array_equal(same, levels)
  np.testing.assert_array_equal(ones, 1.0)
  # Half the clips pinned: whole rows, never single frames.
  rows, _ = pin_given_frames(jax.random.key(1), jnp.full((400, 5), 0.7), 2, 0.5)
  pinned_rows = np.asarray(rows[:, 0] == 0)
  assert 150 < pinned_rows.sum() < 250
  np.testing.assert_array_equal(rows[:, 1] == 0, pinned_rows)
  with pytest.raises(ValueError, match="given frames must be in"):
    pin_given_frames(jax.random.key(0), levels, 5, 1.0)


def test_extension_training_pins_and_skips_given_frames():
  """denoiser_loss with given_prob 1: the model sees the given frames clean (level 0) and their
  outputs do not count, whatever they are."""
  from vdm.config import section
  from vdm.train.objectives import denoiser_loss
  rng = np.random.default_rng(0)
  batch = dict(latents=jnp.asarray(rng.normal(size=(3, 5, 4, 4, 2)), jnp.float32),
               ids=jnp.ones((3, 4), jnp.int32), mask=jnp.ones((3, 4), bool),
               empty_ids=jnp.ones((3, 4), jnp.int32), empty_mask=jnp.ones((3, 4), bool))
  seen = {}

  def model(junk):
    def velocity(x_t, levels, *args):
      seen["levels"], seen["x_t"] = levels, x_t
      return jnp.zeros_like(x_t).at[:, :2].set(junk)
    return velocity

  @jax.jit
  def loss(junk):  # returns what the model saw as well
    value = denoiser_loss(model(junk), batch, jax.random.key(0), section(
        "diffusion", timestep_sampling="logit_normal", given_frames=2, given_prob=1.0))[0]
    return value, seen["levels"], seen["x_t"]

  (value, levels, x_t), (junk_value, _, _) = loss(0.0), loss(123.0)
  assert value == junk_value
  np.testing.assert_array_equal(levels[:, :2], 0.0)
  assert (np.asarray(levels[:, 2:]) > 0).all()
  np.testing.assert_array_equal(x_t[:, :2], batch["latents"][:, :2])  # clean
  # Without extension training every frame counts.
  plain = jax.jit(lambda junk: denoiser_loss(model(junk), batch, jax.random.key(0), section(
      "diffusion", timestep_sampling="logit_normal"))[0])
  assert plain(0.0) != plain(123.0)


def test_moving_mnist_training_data_and_vae_crops(tmp_path):
  import ml_collections

  from vdm.data.kinds import build as from_config
  from vdm.train.run import vae_clip
  config = load_config(TINY)
  builder = from_config(config.data, str(tmp_path))  # height = width -> the generator's size
  video = np.asarray(builder.as_data_source()["train"][0]["video"])
  assert video.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(video, moving_mnist.make_example(0, "train", 0, size=32,
                                                                 frames=4)["video"])
  with pytest.raises(ValueError, match="data.height=32, data.width=64"):
    from_config(ml_collections.ConfigDict(dict(config.data, width=64)), str(tmp_path))
  assert vae_clip(video[None], config.train.vae).shape == (1, 2, 32, 32, 3)  # crop_frames=2
  assert vae_clip(video[None], ml_collections.ConfigDict(dict(crop_frames=0))).shape[1] == 4


def test_latent_split_whole_latent_frames():
  assert latent_split(10, 10, 1) == (10, 10)
  assert latent_split(11, 10, 2) == (6, 5)
  with pytest.raises(ValueError, match="given frames must be 1 \\+ a multiple"):
    latent_split(10, 10, 2)  # latent frame 5 would hold given frame 9 and predicted frame 10
  with pytest.raises(ValueError, match="new frames must be a positive multiple"):
    latent_split(11, 9, 2)


@pytest.mark.parametrize("override, field", [
    ("diffusion.given_frames=4", "diffusion.given_frames"),  # 4 latent frames: at most 3
    ("diffusion.given_frames=1", "diffusion.given_frames"),  # prediction gives 2
    ("diffusion.given_prob=1.5", "diffusion.given_prob"),
    ("prediction.given_frames=4", "prediction.given_frames"),  # nothing left to predict
    ("train.vae.crop_frames=5", "train.vae.crop_frames"),  # longer than data.frames=4
])
def test_invalid_prediction_config_names_the_field(override, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    load_config(TINY, [override])


def test_extension_keeps_given_latents_and_batches_independently(pipe):
  data = pipe.config.data
  clips = np.stack([moving_mnist.make_example(0, "test", i, size=data.height,
                                              frames=data.frames)["video"] for i in range(4)])
  # Batches of 3 clips x 2 samples, the shapes the suite test below compiles too.
  context = encode_given(pipe, clips[:3, :2])
  z = np.asarray(extend_latents(pipe, context, 2, samples=2, seed=3))
  assert z.shape == (2, 3, 4) + context.shape[2:]
  # Given latents pinned at level 0 come back bit for bit; the new ones differ per sample.
  np.testing.assert_array_equal(z[:, :, :2], np.broadcast_to(context, (2,) + context.shape))
  assert np.abs(z[0, :, 2:] - z[1, :, 2:]).max() > 1e-3
  # Clips 1 and 2 in another batch, at their indices, get the same samples.
  shifted = np.asarray(extend_latents(pipe, encode_given(pipe, clips[1:4, :2]), 2, samples=2,
                                      seed=3, first_index=1))
  np.testing.assert_allclose(shifted[:, :2], z[:, 1:], rtol=1e-4, atol=1e-4)


def test_prediction_suite_end_to_end(model_dir, tmp_path, capsys):
  out = tmp_path / "prediction.json"
  assert cli.main(["eval", "--suite", "prediction", "--checkpoint", model_dir, "--num", "3",
                   "--samples", "2", "--out", str(out)]) == 0
  report = json.loads(out.read_text())
  assert (report["num"], report["samples"], report["given_frames"],
          report["predicted_frames"]) == (3, 2, 2, 2)
  assert report["published"] == PUBLISHED and "not from the fixed public test file" in \
      report["note"]
  rows = report["rows"]
  assert list(rows) == ["vdm extension, per sample (mean of 2)", "vdm extension, best of 2",
                        "vdm VAE reconstruction of the true frames",
                        "copy last given frame", "zeros (black frames)"]
  # The baselines, recomputed here from the generator: the suite hands the scorer the given
  # frames and the true continuation unchanged.
  clips = np.stack([moving_mnist.make_example(0, "test", i, size=32, frames=4)["video"]
                    for i in range(3)])
  copy = prediction_scores(np.repeat(clips[:, 1:2], 2, axis=1), clips[:, 2:])
  assert rows["copy last given frame"]["mse"] == pytest.approx(copy["mse"], rel=1e-12)
  assert rows["copy last given frame"]["ssim"] == pytest.approx(copy["ssim"], rel=1e-12)
  zeros = prediction_scores(np.zeros_like(clips[:, 2:]), clips[:, 2:])
  assert rows["zeros (black frames)"]["mse"] == pytest.approx(zeros["mse"], rel=1e-12)
  ours, best = rows["vdm extension, per sample (mean of 2)"], rows["vdm extension, best of 2"]
  assert np.isfinite(ours["mse"]) and 0 < ours["mse"] <= 32 * 32
  assert best["mse"] <= ours["mse"] + 1e-9 and len(ours["mse_per_frame"]) == 2
  table = (tmp_path / "prediction.md").read_text()
  for name, s in PUBLISHED.items():
    assert f"| {name} | {s['mse']:.1f} | {s['ssim']:.3f} | published |" in table
  assert "| copy last given frame |" in table and "| vdm extension, best of 2 |" in table
  assert "not from the fixed public test file" in table
  assert (tmp_path / "prediction.png").exists()
  assert "| TAU | 19.8 | 0.957 | published |" in capsys.readouterr().out
