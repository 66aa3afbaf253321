"""Untrained tiny models (configs/spine.py:tiny) for tests of the generation paths: random weights
make every part of the network matter, and building one takes seconds (no training, no eager
init: `nnx.eval_shape`, then numpy values)."""
from __future__ import annotations

import numpy as np

TINY = "configs/spine.py:tiny"


def random_model_dir(directory: str, seed: int = 0) -> str:
  """Writes a model directory (what `vdm sample --checkpoint` reads) with random weights drawn
  from `seed`; returns `directory`."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from vdm.config import load_config
  from vdm.data.simple import caption_corpus
  from vdm.models import build_denoiser, build_vae, save_model_dir
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  config = load_config(TINY)
  tokenizer = Tokenizer(train_tokenizer(caption_corpus(0, 2000), vocab_size=config.text.vocab_size,
                                        model_type=config.text.tokenizer))
  rng = np.random.default_rng(seed)

  def randomized(build, scale: float):
    graphdef, params, rest = nnx.split(nnx.eval_shape(build), nnx.Param, ...)
    params = jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype),
                          params)
    rest = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), rest)
    return nnx.merge(graphdef, params, rest)

  channels = config.vae.latent_channels
  save_model_dir(directory, config=config, tokenizer=tokenizer,
                 vae=randomized(lambda: build_vae(config), 0.2),
                 denoiser=randomized(lambda: build_denoiser(config, tokenizer.vocab_size), 0.1),
                 latent_stats=dict(mean=np.zeros(channels), std=np.ones(channels)))
  return directory
