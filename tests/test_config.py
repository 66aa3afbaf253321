"""Config loading, overrides and validation errors that name the field."""
import pytest

from vdm.config import ConfigError, load_config, validate


def test_configs_load_and_validate():
  for spec in ("configs/spine.py", "configs/spine.py:tiny", "configs/text_pretrain.py",
               "configs/text_pretrain.py:tiny", "configs/vae_sizes.py:wan",
               "configs/vae_sizes.py:ltx"):
    validate(load_config(spec))


def test_override_parses_literals():
  config = load_config("configs/spine.py:tiny", ["train.dit.steps=11", "sample.aspect=16:9"])
  assert config.train.dit.steps == 11 and config.sample.aspect == "16:9"


@pytest.mark.parametrize("override, field", [
    ("data.frames=8", "data.frames"),
    ("data.height=30", "data.height"),
    ("dit.heads=3", "dit.heads"),
    ("vae.temporal_downsample=3", "vae.temporal_downsample"),
    ("vae.temporal_downsample=4", "vae.temporal_downsample"),  # tiny's 2 levels allow only 2
    ("vae.disc_weight=-0.1", "vae.disc_weight"),
    ("vae.norm='layer'", "vae.norm"),
    ("vae.disc_start=-1", "vae.disc_start"),
    ("vae.disc_start=1.5", "vae.disc_start"),
    ("vae.disc_channels=0", "vae.disc_channels"),
    ("diffusion.timestep_sampling='cosine'", "diffusion.timestep_sampling"),
    ("diffusion.text_dropout=1.5", "diffusion.text_dropout"),
    ("sample.mode='sideways'", "sample.mode"),
    ("train.vae.steps=-1", "train.vae.steps"),  # 0 (the pretrained VAE) needs init_from
    ("train.dit.steps=0", "train.dit.steps"),
    ("train.dit.learning_rate=-1.0", "train.dit.learning_rate"),
])
def test_invalid_values_name_the_field(override, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    load_config("configs/spine.py:tiny", [override])


def test_unknown_fields_and_files():
  with pytest.raises(ConfigError, match="unknown field"):
    load_config("configs/spine.py", ["dit.depthh=3"])
  with pytest.raises(ConfigError, match="no such file"):
    load_config("configs/nope.py")
  with pytest.raises(ConfigError, match="FIELD=VALUE"):
    load_config("configs/spine.py", ["dit.depth"])
  with pytest.raises(ConfigError, match="dit.depth"):
    load_config("configs/spine.py", ["dit.depth='four'"])
