"""The spine with its text encoder pretrained by T5 span corruption before the denoiser trains.

The `text` stage trains the spine's T5-style encoder plus a small decoder (vdm/text/decoder.py) to
restore spans masked out of the training captions (vdm/text/span_corruption.py), through the one
loop, and exports WORKDIR/text_encoder (T5-layout t5.npz + tokenizer.model); the VAE and
denoiser stages then run as in configs/spine.py, the denoiser's encoder starting from it.

  vdm train --config configs/text_pretrain.py --workdir W --until text   # pretraining only
  vdm train --config configs/text_pretrain.py --workdir W                # ... then the t2v model
  vdm train --config configs/spine.py --set text.init_from=W/text_encoder --workdir W2

Arguments (`configs/text_pretrain.py:ARG`): (none) the spine's sizes; tiny: seconds, for tests.
"""
from configs import spine


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/text_pretrain.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
  config = spine.get_config(arg or None)
  config.name = "text_pretrain"
  if arg == "tiny":
    config.train.text.update(steps=60, learning_rate=3e-3, warmup_steps=5, log_every=10,
                             checkpoint_every=30)
  else:
    config.train.text.update(steps=600, warmup_steps=50, log_every=25, checkpoint_every=200)
  return config
