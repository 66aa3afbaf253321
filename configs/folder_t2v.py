"""Text-to-video on your own videos (`data.kind = folder`): the spine's models trained on one
bucket of a dataset made by `vdm data import`.

  vdm data import DIR --out mine --short-side 32 --lengths 17,33
  vdm train --config configs/folder_t2v.py:mine,32x32_t17 --workdir workdirs/mine

Arguments (`configs/folder_t2v.py:NAME,BUCKET[,tiny]`):
  NAME    the import's --out.
  BUCKET  one of its splits, <height>x<width>_t<frames> (the import prints them). The causal VAE
          takes 1 + a multiple of vae.temporal_downsample (2) frames: import with --lengths such
          as 9, 17 or 33 to train on the clips.
  tiny    seconds-long model and training settings, for a smoke run.
data.data_dir is where the import wrote ($VDM_DATA_DIR, else 'data', as its --data-dir);
data.fps must be the import's --fps (8 unless given).
"""
import re

from configs import spine
from vdm.data.cli import DEFAULT_DATA_DIR


NAMES = ()  # needs your dataset's NAME,BUCKET: `vdm models` lists none


def get_config(arg: str | None = None):
  name, bucket, *options = (arg or "").split(",") + [""]
  options = [o for o in options if o]
  match = re.fullmatch(r"(\d+)x(\d+)_t(\d+)", bucket)
  if not name or not match or not set(options) <= {"tiny"}:
    raise ValueError(f"configs/folder_t2v.py: argument {arg!r}: allowed NAME,BUCKET[,tiny], "
                     "e.g. mine,32x32_t17 (BUCKET: a split of `vdm data import DIR --out NAME`)")
  height, width, frames = (int(g) for g in match.groups())
  config = spine.get_config("tiny" if options else None)
  config.name = f"folder_t2v_{name}"
  config.data.update(dict(kind="folder", name=name, height=height, width=width, frames=frames,
                          data_dir=DEFAULT_DATA_DIR))
  config.sample.update(seconds=frames / config.data.fps, max_frames=4 * (frames - 1) + 1)
  return config
