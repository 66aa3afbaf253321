"""Named model sizes: the built modules hold exactly the parameters the closed form predicts."""
import pytest
from flax import nnx

from vdm.config import load_config
from vdm.models import build_denoiser, count_params, denoiser_param_count


@pytest.mark.parametrize("name, low, high", [
    ("tiny", 1e4, 1e6), ("spine", 1e6, 1e7), ("small", 5e7, 2e8), ("base", 2e8, 6e8),
    ("wan1.3b", 2e9, 3e9)])
def test_parameter_count_matches_the_formula(name, low, high):
  config = load_config(f"configs/model_sizes.py:{name}")
  vocab = config.text.vocab_size
  abstract = nnx.eval_shape(lambda: build_denoiser(config, vocab))  # no memory for the weights
  count = count_params(abstract)
  assert count == denoiser_param_count(config, vocab)
  assert low <= count <= high, f"{name}: {count:,} parameters"


def test_full_attention_parameter_count_matches_the_formula():
  config = load_config("configs/model_sizes.py:small", ["dit.attention='full'"])
  abstract = nnx.eval_shape(lambda: build_denoiser(config, config.text.vocab_size))
  count = count_params(abstract)
  assert count == denoiser_param_count(config, config.text.vocab_size)
  factorized = load_config("configs/model_sizes.py:small")
  assert count < denoiser_param_count(factorized, factorized.text.vocab_size)


@pytest.mark.parametrize("overrides, extra", [
    (["dit.scan_layers=True"], 0), (["dit.position='rope3d'"], 0),
    # The patch embedding and output layer read and write 2x the latent values per token.
    (["dit.temporal_patch=2"], (2 - 1) * 2 * 2 * 8 * (384 + 384 + 1)),
    (["dit.temporal_patch=4", "dit.scan_layers=True", "dit.position='rope3d'"],
     (4 - 1) * 2 * 2 * 8 * (384 + 384 + 1)),
    # A distilled student's scalar input: a two-layer embedding, width x width each.
    (["dit.guidance_input=True"], 2 * (384 * 384 + 384)),
    (["dit.guidance_input=True", "dit.step_input=True", "dit.scan_layers=True"],
     4 * (384 * 384 + 384))])
def test_dit_options_parameter_count_matches_the_formula(overrides, extra):
  """Scanned layers hold the same parameters stacked; rotary positions have none; a temporal
  patch widens only the patch embedding's input and the output layer; a scalar input (guidance,
  step) adds its embedding."""
  config = load_config("configs/model_sizes.py:small", overrides)
  count = count_params(nnx.eval_shape(lambda: build_denoiser(config, config.text.vocab_size)))
  assert count == denoiser_param_count(config, config.text.vocab_size)
  plain = load_config("configs/model_sizes.py:small")
  assert count == denoiser_param_count(plain, plain.text.vocab_size) + extra


def test_wan_shaped_dit_has_wan_dimensions():
  config = load_config("configs/model_sizes.py:wan1.3b")
  d = config.dit
  assert (d.width, d.depth, d.heads, int(round(d.width * d.mlp_ratio))) == (1536, 30, 12, 8960)
  assert config.vae.latent_channels == 16


def test_unknown_size_is_named():
  with pytest.raises(ValueError, match="unknown size 'huge'.*'wan1.3b'"):
    load_config("configs/model_sizes.py:huge")
