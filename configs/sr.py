"""The learned upscaler (vdm/post/sr.py), trained through the one loop (vdm/train/upscaler.py).

Arguments (`configs/sr.py:FACTOR[,tiny][,scenes]`): FACTOR 2 or 4; tiny = seconds, for tests;
scenes = train on the synthetic scenes instead of natural-image clips (photo_pans: real photos
under a hand-held camera; what transfers to real footage).
  vdm train --config configs/sr.py:2 --workdir workdirs/sr_x2   # then cp -r W/model checkpoints/sr_x2
"""
import ml_collections


NAMES = ("2", "4")  # the arguments `vdm models` lists


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  factor, *options = (arg or "2").split(",")
  if factor not in ("2", "4") or not set(options) <= {"tiny", "scenes"}:
    raise ValueError(f"configs/sr.py: argument {arg!r}: allowed FACTOR[,tiny][,scenes] with "
                     "FACTOR 2 or 4")
  config = ml_collections.ConfigDict()
  config.name = f"sr_x{factor}"
  config.task = "sr"
  config.seed = 0
  config.factor = int(factor)
  if "scenes" in options:
    # Scenes: textures from skimage, MNIST digits, several objects, camera pans and zooms.
    config.data = ml_collections.ConfigDict(dict(
        kind="scenes", aspect="1:1", short_side=64, frames=8, fps=8, long_factor=2,
        max_objects=3, num_train=3000, num_test=64, num_long=2, seed=0, data_dir=""))
  else:
    # Photos under a hand-held camera, optics blur and sensor noise (vdm/data/photo_pans.py).
    config.data = ml_collections.ConfigDict(dict(
        kind="photo_pans", aspect="1:1", short_side=64, frames=8, fps=8, num_train=3000,
        num_test=64, seed=0, data_dir=""))
  # temporal_weight: weight of the error in frame-to-frame change (up_t+1 - up_t vs the
  # original's), so the upscaler adds no flicker of its own.
  # input_noise: max std (8-bit levels) of per-frame noise on the training input only, so the
  # model averages input flicker away instead of sharpening it (vdm.train.upscaler.sr_loss).
  config.loss = ml_collections.ConfigDict(dict(temporal_weight=1.0, input_noise=2.0))
  config.model = ml_collections.ConfigDict(dict(width=32, blocks=4, neighbours=1))
  config.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=4, learning_rate=1e-3, warmup_steps=50, weight_decay=0.0,
      grad_clip=1.0, ema_decay=0.99, log_every=50, checkpoint_every=250, nan_policy="skip",
      max_nan_skips=10))
  if "tiny" in options:
    config.data.update(short_side=16, frames=4, num_train=8, num_test=4)
    config.model.update(width=8, blocks=1)
    config.train.update(steps=4, batch_size=2, warmup_steps=1, log_every=2, checkpoint_every=2)
  return config
