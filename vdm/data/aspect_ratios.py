"""Frame sizes of the datasets' aspect ratios, shared by the generated datasets
(`vdm.data.scenes_builder`) and the folder import (`vdm.data.importer`)."""
from __future__ import annotations

ASPECTS = {"1:1": (1, 1), "16:9": (9, 16), "9:16": (16, 9)}  # name -> (height, width) ratio


def aspect_size(aspect: str, short_side: int) -> tuple[int, int]:
  """(height, width) of an aspect at a short side, rounded to a multiple of 8 (e.g. 16:9 at 144
  -> (144, 256))."""
  if aspect not in ASPECTS:
    raise ValueError(f"aspect must be one of {sorted(ASPECTS)}, got {aspect!r}")
  h, w = ASPECTS[aspect]
  unit = short_side / min(h, w)
  return int(round(h * unit / 8) * 8), int(round(w * unit / 8) * 8)
