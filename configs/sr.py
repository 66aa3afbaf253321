"""The learned upscaler (vdm/post/sr.py), trained through the one loop (vdm/train/upscaler.py).

Every field is at its schema default (vdm/config/sr.py): the defaults are the shipped x2 model,
trained on natural-image clips (photo_pans: real photos under a hand-held camera, optics blur and
sensor noise; what transfers to real footage) through a random degradation chain per clip
(`degrade`: area / bilinear / bicubic / Lanczos downscaling, blur, noise, JPEG).

Arguments (`configs/sr.py:FACTOR[,tiny][,scenes]`): FACTOR 2 or 4; tiny = seconds, for tests;
scenes = train on the synthetic scenes instead of natural-image clips.
  vdm train --config configs/sr.py:2 --workdir workdirs/sr_x2   # then cp -r W/model checkpoints/sr_x2
"""
import ml_collections

from vdm.config import defaults


NAMES = ("2", "4")  # the arguments `vdm models` lists


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  factor, *options = (arg or "2").split(",")
  if factor not in ("2", "4") or not set(options) <= {"tiny", "scenes"}:
    raise ValueError(f"configs/sr.py: argument {arg!r}: allowed FACTOR[,tiny][,scenes] with "
                     "FACTOR 2 or 4")
  # `vdm config show --config configs/sr.py:2` prints every field with its value and doc.
  config = defaults("sr")
  config.name = f"sr_x{factor}"
  config.factor = int(factor)
  if "scenes" in options:
    # Scenes: textures from skimage, MNIST digits, several objects, camera pans and zooms.
    config.data.kind = "scenes"
    with config.data.unlocked():
      config.data.max_objects = 3
  if "tiny" in options:
    config.data.update(short_side=16, frames=4, num_train=8, num_test=4)
    config.model.update(width=8, blocks=1)
    config.train.update(steps=4, batch_size=2, warmup_steps=1, log_every=2, checkpoint_every=2)
  return config
