"""Records the golden samples of the shipped checkpoints: `python -m tests.golden.record`.

Each request in REQUESTS is sampled from its checkpoint and stored as uint8 frames in
tests/golden/<name>.npz with the sha256 of the frames, the CPU it ran on and the git commit.
tests/test_golden.py samples the same requests and compares. Rerun this only when a change is
meant to change what the shipped models generate, and say so in the commit.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHECKPOINTS = os.path.join(ROOT, "checkpoints")
PROMPT = "a red circle moving right on a blue background"

# name -> (checkpoint, Pipeline.resolve options). Every prompt-only mode, the no-cache path, a
# second sampler, guidance off, image-to-video and a negative prompt.
REQUESTS = {
    "spine_parallel": ("spine", dict(seed=0)),
    "spine_heun_neg": ("spine", dict(seed=1, sampler="heun", steps=8,
                                     negative_prompt="a green square")),
    "forcing_parallel": ("spine_forcing", dict(seed=0)),
    "forcing_ar_kv": ("spine_forcing", dict(seed=0, mode="autoregressive", seconds=2.0)),
    "forcing_ar_nokv": ("spine_forcing", dict(seed=0, mode="autoregressive", kv_cache=False)),
    "forcing_rolling": ("spine_forcing", dict(seed=2, mode="rolling", chunk=2,
                                              context_noise=0.1, guidance=1.0)),
    "forcing_i2v": ("spine_forcing", dict(seed=0, mode="image_to_video", image="IMAGE")),
}


def golden_image(path: str) -> str:
  """A deterministic 32x32 PNG (a red disc on blue) for the image-to-video request."""
  import mediapy
  yy, xx = np.mgrid[:32, :32]
  image = np.zeros((32, 32, 3), np.uint8)
  image[...] = (30, 40, 200)
  image[(yy - 16) ** 2 + (xx - 10) ** 2 <= 25] = (220, 30, 30)
  mediapy.write_image(path, image)
  return path


def sample(name: str, image_path: str) -> np.ndarray:
  import vdm
  checkpoint, options = REQUESTS[name]
  options = dict(options)
  if options.get("image") == "IMAGE":
    options["image"] = image_path
  pipe = vdm.Pipeline.load(os.path.join(CHECKPOINTS, checkpoint))
  return pipe(PROMPT, **options)


def digest(frames: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def main() -> int:
  import tempfile

  from vdm.provenance import git_commit
  commit = git_commit()
  with tempfile.TemporaryDirectory() as tmp:
    image = golden_image(os.path.join(tmp, "first.png"))
    index = {}
    for name in REQUESTS:
      frames = sample(name, image)
      np.savez_compressed(os.path.join(HERE, f"{name}.npz"), frames=frames)
      index[name] = dict(sha256=digest(frames), shape=list(frames.shape))
      print(name, frames.shape, index[name]["sha256"][:16])
  with open(os.path.join(HERE, "golden.json"), "w") as f:
    json.dump(dict(cpu=cpu_name(), git_commit=commit, samples=index), f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
