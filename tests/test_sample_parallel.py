"""Sampling on a mesh of 8 simulated devices gives one device's frames: a batch of prompts split
over data-parallel devices, and a long clip's frames split over `sequence` (checkpoints/spine,
few sampler steps)."""
import json
import os

import numpy as np
import pytest

import vdm
from vdm import cli

SPINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints",
                     "spine")
PROMPTS = ["a red circle moving right on a blue background",
           "a green square moving up on a black background",
           "a yellow triangle moving left on a white background",
           "a blue circle moving down on a red background"]


@pytest.fixture(scope="module")
def one_device():
  return vdm.Pipeline.load(SPINE)


def _close(a, b):
  """uint8 frames equal up to a rounding flip of one level."""
  diff = np.abs(a.astype(int) - b.astype(int))
  assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_prompts_split_over_data_devices_equal_one_at_a_time(one_device):
  mesh = vdm.Pipeline.load(SPINE, parallel=dict(data=4))
  assert mesh.placement.mesh.shape["data"] == 4
  requests = [mesh.resolve(p, seed=7 + i, steps=3) for i, p in enumerate(PROMPTS)]
  batch = mesh.generate_batch(requests)["frames"]
  assert batch.shape[0] == 4
  for i, prompt in enumerate(PROMPTS):
    _close(batch[i], one_device(prompt, seed=7 + i, steps=3))
  assert not np.array_equal(batch[0], batch[1])


def test_long_clip_split_over_sequence_equals_one_device(one_device):
  # 15 frames -> 8 latent frames, one per device (factorized attention splits the frames).
  mesh = vdm.Pipeline.load(SPINE, parallel=dict(sequence=8))
  options = dict(seed=3, steps=3, seconds=15 / 8)
  _close(mesh(PROMPTS[0], **options), one_device(PROMPTS[0], **options))


def test_cli_samples_a_prompt_file_on_a_mesh(tmp_path, capsys):
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("# two prompts\n" + "\n".join(PROMPTS[:2]) + "\n")
  out = tmp_path / "clip.mp4"
  assert cli.main(["sample", "--prompt-file", str(prompts), "--parallel", "data=2", "--steps", "2",
                   "--seed", "5", "--out", str(out)]) == 0
  for i, prompt in enumerate(PROMPTS[:2]):
    sidecar = json.load(open(tmp_path / f"clip_{i}.json"))
    assert sidecar["request"]["prompt"] == prompt and sidecar["request"]["seed"] == 5 + i
    assert sidecar["parallel"] == dict(data=2)
    assert os.path.getsize(tmp_path / f"clip_{i}.mp4") > 0
  assert cli.main(["sample", "--prompt", "x", "--parallel", "dta=2", "--out",
                   str(tmp_path / "y.mp4")]) == 2
  assert "--parallel 'dta=2'" in capsys.readouterr().err
