"""Latents and frozen text embeddings computed once and cached beside the dataset
(vdm/train/latent_cache.py): equal to computing them per batch, keyed by the weights."""
import functools
import os

import jax
import numpy as np
import pytest
from flax import nnx

from vdm.config import load_config
from vdm.data import simple_builder
from vdm.data.loader import make_loader, make_source_loader
from vdm.models import build_denoiser, build_vae
from vdm.nn import normalize_pixels
from vdm.text.tokenizer import Tokenizer, train_tokenizer
from vdm.train import latent_cache
from vdm.train.objectives import denoiser_loss


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = load_config("configs/spine.py:tiny", ["data.num_train=12", "data.num_test=2"])
  builder = simple_builder.prepare(str(tmp_path_factory.mktemp("data")), height=16, width=16,
                                   frames=5, fps=8, num_train=12, num_test=2, seed=0)
  return config, builder, build_vae(config, 0)


def test_cached_latents_equal_encoding_and_are_reused(setup):
  config, builder, vae = setup
  directory = latent_cache.build_latent_cache(builder, "train", vae, config.vae, batch_size=5)
  source = latent_cache.LatentSource(directory, "train")
  records = builder.as_data_source()["train"]
  assert len(source) == len(records) == 12
  videos = np.stack([np.asarray(records[i]["video"]) for i in range(12)])
  expected = np.asarray(vae.encode(normalize_pixels(videos))[0])
  for i in range(12):  # the last batch of 5 was padded: every record still lands in its row
    np.testing.assert_allclose(source[i]["latents"], expected[i], atol=1e-5)
    assert source[i]["caption"] == records[i]["caption"].decode()
    assert int(source[i]["direction"]) == int(records[i]["direction"])
  stamp = os.path.getmtime(os.path.join(directory, "train.npy"))
  assert latent_cache.build_latent_cache(builder, "train", vae, config.vae) == directory
  assert os.path.getmtime(os.path.join(directory, "train.npy")) == stamp
  # Other weights: another key, another cache; the first one is not read for them.
  other = build_vae(config, 1)
  assert latent_cache.build_latent_cache(builder, "train", other, config.vae) != directory
  assert latent_cache.module_digest(vae, {"a": 1}) != latent_cache.module_digest(vae, {"a": 2})


def test_cached_loader_visits_the_clips_in_the_video_loaders_order(setup):
  config, builder, vae = setup
  source = latent_cache.LatentSource(
      latent_cache.build_latent_cache(builder, "train", vae, config.vae), "train")
  videos = iter(make_loader(builder, "train", batch_size=4, seed=7))
  cached = iter(make_source_loader(source, batch_size=4, seed=7))
  for _ in range(5):  # past an epoch boundary
    a, b = next(videos), next(cached)
    assert list(a["caption"]) == list(b["caption"])
    np.testing.assert_array_equal(a["center"], b["center"])
    assert b["latents"].shape == (4, 3, 8, 8, config.vae.latent_channels)
  assert "LatentSource(key=" in repr(source)


def test_cached_text_gives_the_loss_of_the_encoder(setup):
  config, builder, _ = setup
  captions = [r["caption"].decode() for r in builder.as_data_source()["train"]]
  tokenizer = Tokenizer(train_tokenizer(captions * 20, vocab_size=config.text.vocab_size,
                                        model_type=config.text.tokenizer))
  denoiser = build_denoiser(config, tokenizer.vocab_size, 0)
  cache = latent_cache.build_text_cache(builder, "train", captions, denoiser.text, tokenizer,
                                        config.text.max_length)
  again = latent_cache.build_text_cache(builder, "train", captions, denoiser.text, tokenizer,
                                        config.text.max_length)  # read back from disk
  np.testing.assert_array_equal(cache.embeddings, again.embeddings)
  ids, mask = tokenizer.encode(captions[:4], config.text.max_length)
  text, cached_mask = cache.lookup(captions[:4])
  np.testing.assert_allclose(text, denoiser.text(ids, mask), atol=1e-5)
  np.testing.assert_array_equal(cached_mask, mask)
  with pytest.raises(KeyError, match="not in the text-embedding cache"):
    cache.lookup(["a caption never seen"])

  empty_ids, empty_mask = tokenizer.encode([""] * 4, config.text.max_length)
  empty_text, _ = cache.lookup([""] * 4)
  latents = np.asarray(jax.random.normal(jax.random.key(0), (4, 3, 8, 8, 8)))
  common = dict(latents=latents, mask=mask, empty_mask=empty_mask)
  loss = functools.partial(denoiser_loss, cfg=config.diffusion.copy_and_resolve_references())
  rng = jax.random.key(3)
  with_ids, _ = loss(denoiser, dict(common, ids=ids, empty_ids=empty_ids), rng)
  with_text, _ = loss(denoiser, dict(common, text=text, empty_text=empty_text), rng)
  np.testing.assert_allclose(with_text, with_ids, rtol=1e-5)
