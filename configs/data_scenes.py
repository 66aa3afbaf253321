"""Data settings for the synthetic benchmark, Moving MNIST, and imported folders.

`config.data.kind` selects the dataset ('simple' is the spine's one-shape generator, unchanged):
  scenes        1-3 objects, backgrounds, camera motion; splits train / test (held-out
                compositions) / long (long_factor x frames). Any aspect at any short side.
  moving_mnist  the classic 64x64, 2 digits, 20 frames.
  folder        a dataset made by `vdm data import DIR --out NAME` (data.name).

Arguments (`configs/data_scenes.py:ARG`):
  (none)        scenes, 1:1 at 64x64, 16 frames.
  wide          scenes, 16:9 at 256x144, 32 frames.
  tall          scenes, 9:16 at 144x256, 32 frames.
  moving_mnist  the classic Moving MNIST setting.
  folder:NAME   an imported folder.
  tiny          seconds-long scenes for tests.
"""
import ml_collections


NAMES = ()  # a dataset, not a model: `vdm models` lists none


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "data_scenes"
  config.seed = 0
  scenes = dict(kind="scenes", aspect="1:1", short_side=64, frames=16, fps=8, long_factor=4,
                max_objects=3, num_train=20000, num_test=512, num_long=128, seed=0,
                data_dir="")  # empty: <workdir>/data
  arg = arg or ""
  if arg in ("", "wide", "tall", "tiny"):
    config.data = ml_collections.ConfigDict(scenes)
    if arg in ("wide", "tall"):
      config.data.update(aspect="16:9" if arg == "wide" else "9:16", short_side=144, frames=32)
    elif arg == "tiny":
      config.data.update(short_side=16, frames=4, num_train=16, num_test=4, num_long=2,
                         long_factor=2)
  elif arg == "moving_mnist":
    config.data = ml_collections.ConfigDict(dict(
        kind="moving_mnist", size=64, frames=20, num_digits=2, fps=10, num_train=10000,
        num_test=1000, seed=0, data_dir=""))
  elif arg.startswith("folder:") and len(arg) > len("folder:"):
    config.data = ml_collections.ConfigDict(dict(kind="folder", name=arg[len("folder:"):],
                                                 data_dir=""))
  else:
    raise ValueError(f"configs/data_scenes.py: unknown argument {arg!r}; allowed: '', 'wide', "
                     f"'tall', 'tiny', 'moving_mnist', 'folder:NAME'")
  return config
