"""`vdm train` on a mesh of 8 simulated devices logs the loss curve of the 1-device run.

One 1-device run (`--until dit`) is shared by every case: each case copies its tokenizer, VAE
checkpoints and latent statistics into a fresh workdir (so the VAE stage is restored, onto the
case's mesh) and trains the denoiser stage through `vdm train` itself with another
`parallel` section. Tiny sizes: 7 frames make 4 latent frames, so `sequence=4` really splits
them (factorized attention shards the frames).
"""
import json
import os
import shutil

import numpy as np
import pytest

from vdm import cli

BASE = ["--config", "configs/spine.py:tiny", "--set", "data.frames=7",
        "--set", "train.vae.steps=2", "--set", "train.vae.batch_size=8",
        "--set", "train.dit.steps=3", "--set", "train.dit.log_every=1",
        "--set", "train.dit.checkpoint_every=3", "--set", "train.dit.batch_size=8"]


def _train(workdir, data_dir, *sets, until="dit"):
  args = ["train", *BASE, "--set", f"data.data_dir={data_dir!r}", "--workdir", str(workdir),
          "--until", until]
  for item in sets:
    args += ["--set", item]
  assert cli.main(args) == 0


def _log(workdir, stage="dit"):
  return [json.loads(line) for line in open(os.path.join(workdir, stage, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The 1-device run's workdir and data directory."""
  os.environ["VDM_NO_PROGRESS"] = "1"
  base = tmp_path_factory.mktemp("train_parallel")
  data_dir, workdir = str(base / "data"), base / "one"
  _train(workdir, data_dir)
  return workdir, data_dir


@pytest.mark.parametrize("mesh", [
    ("parallel.fsdp=4", "parallel.tensor=2"),
    ("parallel.data=8",),
    ("parallel.data=2", "parallel.sequence=4"),
    ("parallel.data=2", "parallel.fsdp=2", "parallel.tensor=2"),
], ids=["fsdp4-tensor2", "data8", "data2-sequence4", "mixed"])
def test_sharded_run_logs_the_one_device_losses(reference, tmp_path, mesh):
  workdir, data_dir = reference
  for name in ("config.json", "tokenizer.model", "latent_stats.json", "vae"):
    copy = shutil.copytree if os.path.isdir(workdir / name) else shutil.copy
    copy(workdir / name, tmp_path / name)
  _train(tmp_path, data_dir, *mesh)
  one, sharded = _log(workdir), _log(tmp_path)
  assert [l["step"] for l in sharded] == [l["step"] for l in one] == [1, 2, 3]
  for key in ("loss", "grad_norm", "mean_level"):
    np.testing.assert_allclose([l[key] for l in sharded], [l[key] for l in one], rtol=2e-5,
                               err_msg=key)
  assert one[-1]["loss"] != one[0]["loss"]  # the steps really trained


def test_bad_mesh_is_refused_with_the_field_named(reference, tmp_path, capsys):
  workdir, data_dir = reference
  args = ["train", *BASE, "--set", f"data.data_dir={data_dir!r}", "--workdir", str(tmp_path)]
  assert cli.main(args + ["--set", "parallel.data=16"]) == 2
  assert "parallel.data=16" in capsys.readouterr().err
  assert cli.main(args + ["--set", "parallel.data=8", "--set", "train.dit.batch_size=12"]) == 2
  err = capsys.readouterr().err
  assert "train.dit.batch_size=12" in err and "multiple of" in err
  assert not os.path.exists(tmp_path / "dit")  # refused before any work
