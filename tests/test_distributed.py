"""A training step as 2 processes (jax.distributed, gloo CPU collectives) equals the 1-process
step, and its orbax checkpoint (each process writing its shards) restores onto another mesh."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from vdm.parallel import make_mesh, rules_for
from vdm.parallel.distributed import restore_onto

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run(num_processes: int, tmp_path, name: str) -> dict:
  out, checkpoint = str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}_ckpt")
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(WORKER)))
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), str(num_processes), str(port), out,
                             checkpoint], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return dict(json.load(open(out)), checkpoint=checkpoint)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("distributed")
  return _run(1, tmp, "one"), _run(2, tmp, "two")


def test_two_processes_match_one(runs):
  one, two = runs
  assert one["processes"] == 1 and two["processes"] == 2
  np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
  assert one["losses"][1] != one["losses"][0]  # the step really changed the weights
  assert two["checksums"].keys() == one["checksums"].keys()
  for name, value in one["checksums"].items():
    np.testing.assert_allclose(two["checksums"][name], value, rtol=1e-5, err_msg=name)


def test_multiprocess_checkpoint_restores_onto_another_mesh(runs):
  sys.path.insert(0, os.path.dirname(WORKER))
  from distributed_worker import init  # noqa: E402 - the worker's model definition
  one, two = runs
  mesh = make_mesh(dict(data=1, fsdp=4, tensor=2))  # saved on data 2 x fsdp 2 x tensor 2
  model = restore_onto(two["checkpoint"], init, mesh, rules_for("factorized"))
  kernel = nnx.state(model, nnx.Param)["blocks"][0]["mlp"]["fc1"]["kernel"].value
  assert kernel.sharding.mesh.shape["fsdp"] == 4 and len(kernel.sharding.device_set) == 8
  params = nnx.state(model, nnx.Param)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  sums = {jax.tree_util.keystr(path): float(np.sum(np.asarray(x) ** 2)) for path, x in flat}
  assert sums.keys() == one["checksums"].keys()
  for name, value in one["checksums"].items():
    np.testing.assert_allclose(sums[name], value, rtol=1e-5, err_msg=name)
