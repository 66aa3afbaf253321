"""The spine: the small text-to-video model the repo ships, trained on this CPU in minutes.

Synthetic clips (a coloured shape moving on a coloured background), 32x32, 9 frames at 8 fps.
The causal VAE compresses 2x in time and 4x in space (9x32x32x3 -> 5x8x8x8); a 4-layer
factorized DiT denoises the latents with flow matching, conditioned on a 2-layer T5-style encoder.

Every field is at its schema default (vdm/config/t2v.py): the defaults are this model.

Arguments (`configs/spine.py:ARG`):
  (none)  the shipped model.
  tiny    seconds-long settings for tests and Colab smoke runs.

`parallel` (the device mesh) stays at one device unless set: `--set parallel.data=-1` uses every
device; docs/scaling.md gives the recipes for meshes.
"""
import ml_collections

from vdm.config import defaults


# The arguments `vdm models` lists (None: the default).
NAMES = (None, "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The schema's defaults are the spine: `vdm config show --config configs/spine.py` prints every
  # field with its value and doc (vdm/config/t2v.py declares them).
  config = defaults("t2v")
  config.name = "spine"
  if arg == "tiny":
    config.data.update(height=16, width=16, frames=5, num_train=32, num_test=8)
    config.text.update(width=32, depth=1, heads=2, mlp=64, max_length=16)
    config.vae.update(base_channels=8, channel_mult=(1, 2))
    config.dit.update(width=32, depth=1, heads=2)
    config.sample.update(steps=4, resolution=16, seconds=5 / 8, max_frames=9)
    for stage_cfg in (config.train.vae, config.train.dit):
      stage_cfg.update(steps=6, batch_size=4, warmup_steps=2, log_every=2, checkpoint_every=3)
    config.text_pretrain.update(decoder_depth=1)
    config.train.text.update(batch_size=16, warmup_steps=2, log_every=2, checkpoint_every=3)
  elif arg:
    raise ValueError(f"configs/spine.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
  return config


def named_size(arg: str | None, sizes: dict, *, source: str,
               prefix: str) -> ml_collections.ConfigDict:
  """The spine config with the named entry of `sizes` (section -> fields to override) applied;
  'tiny' and 'spine' (the default) are the spine's own. Used by configs/model_sizes.py and
  configs/vae_sizes.py."""
  name = arg or "spine"
  if name == "tiny":
    return get_config("tiny")
  config = get_config()
  if name == "spine":
    return config
  if name not in sizes:
    raise ValueError(f"{source}: unknown size {name!r}; allowed {['tiny', 'spine', *sizes]}")
  config.name = f"{prefix}_{name}"
  for section, fields in sizes[name].items():
    config[section].update(fields)
  return config
