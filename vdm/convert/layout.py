"""Which public layout a Wan2.1 directory is in, from its files alone (no jax: the config checks
ask it of `init_from`; vdm.convert.wan reads the directory)."""
from __future__ import annotations

import json
import os

# The original release's VAE file (its presence, with config.json, marks the layout).
ORIGINAL_VAE = "Wan2.1_VAE.pth"


def detect_layout(directory: str) -> str | None:
  """'diffusers', 'original' or None (not a Wan2.1 directory)."""
  if not os.path.isdir(directory):
    return None
  index = os.path.join(directory, "model_index.json")
  if os.path.isfile(index):
    try:
      with open(index) as f:
        name = json.load(f).get("_class_name", "")
    except ValueError:
      return None
    return "diffusers" if name.startswith("Wan") else None
  if os.path.isfile(os.path.join(directory, ORIGINAL_VAE)) and os.path.isfile(
      os.path.join(directory, "config.json")):
    return "original"
  return None
