"""The shipped checkpoints generate the frames recorded in tests/golden (tests/golden/record.py):
a refactor that changes what `vdm sample` writes fails here.

On the CPU model the golden frames were recorded on, the frames must be the same bits (their
sha256). XLA compiles for the host's vector units, so another CPU model may round a float
differently; there the frames must agree to within 35 dB PSNR of the recorded ones instead.
"""
import json
import os

import numpy as np
import pytest

from tests.golden import record

with open(os.path.join(record.HERE, "golden.json")) as f:
  GOLDEN = json.load(f)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
  return record.golden_image(str(tmp_path_factory.mktemp("golden") / "first.png"))


@pytest.mark.parametrize("name", sorted(record.REQUESTS))
def test_shipped_checkpoint_samples_golden_frames(name, image):
  frames = record.sample(name, image)
  expected = GOLDEN["samples"][name]
  assert list(frames.shape) == expected["shape"]
  if record.cpu_name() == GOLDEN["cpu"]:
    assert record.digest(frames) == expected["sha256"], (
        f"{name}: the frames differ from tests/golden/{name}.npz (recorded at "
        f"{GOLDEN['git_commit'][:10]} on this CPU model)")
  else:
    reference = np.load(os.path.join(record.HERE, f"{name}.npz"))["frames"].astype(np.float64)
    mse = np.mean((frames.astype(np.float64) - reference) ** 2)
    assert mse == 0 or 10 * np.log10(255.0 ** 2 / mse) > 35.0, name
