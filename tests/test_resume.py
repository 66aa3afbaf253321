"""Killed and preempted training resumes bit-identically: same loss log, same final bits.

Runs `vdm train --until vae` at tiny size in subprocesses. A persistent XLA compilation cache
shared by the runs keeps each restart to a few seconds (the cached executable is the same one,
so it cannot change the numbers).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12
KILLS = 3


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """(data dir, env) shared by every run here: the dataset is built once, XLA compiles once."""
  base = tmp_path_factory.mktemp("resume_shared")
  env = dict(os.environ, VDM_NO_PROGRESS="1", JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(base / "xla_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return str(base / "data"), env


def _command(workdir, data_dir, checkpoint_every):
  return [sys.executable, "-m", "vdm.cli", "train", "--config", "configs/spine.py:tiny",
          "--workdir", str(workdir), "--until", "vae", "--set", f"train.vae.steps={STEPS}",
          "--set", f"train.vae.checkpoint_every={checkpoint_every}", "--set", "train.vae.log_every=1",
          "--set", "train.vae.warmup_steps=2", "--set", f"data.data_dir={data_dir!r}"]


def _start(workdir, shared, checkpoint_every=1):
  data_dir, env = shared
  return subprocess.Popen(_command(workdir, data_dir, checkpoint_every), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged_steps(workdir) -> int:
  path = os.path.join(workdir, "vae", "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for line in f if line.endswith("\n"))


def _wait_for_step(proc, workdir, step, timeout=120.0):
  deadline = time.time() + timeout
  while _logged_steps(workdir) < step:
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline, f"no step {step} within {timeout}s"
    time.sleep(0.02)


def _log(workdir):
  """The loss log without wall-clock times."""
  with open(os.path.join(workdir, "vae", "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def _final_state(workdir, step=STEPS):
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, "vae", "checkpoints", str(step), "state")
  import jax
  return jax.tree_util.tree_flatten_with_path(ocp.StandardCheckpointer().restore(path))[0]


def _assert_same_bits(a_dir, b_dir):
  a, b = _final_state(a_dir), _final_state(b_dir)
  assert [p for p, _ in a] == [p for p, _ in b]
  for (path, x), (_, y) in zip(a, b):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape, path
    assert x.tobytes() == y.tobytes(), f"{path} differs"


@pytest.fixture(scope="module")
def reference(shared, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  proc = _start(workdir, shared)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  return str(workdir)


def test_sigkill_at_random_points_resumes_bit_identically(reference, shared, tmp_path):
  rng = random.Random(0)
  workdir = str(tmp_path / "killed")
  kills = []
  for _ in range(KILLS):
    proc = _start(workdir, shared)
    done = _logged_steps(workdir)
    target = rng.randint(done + 1, min(done + 4, STEPS - 1))
    _wait_for_step(proc, workdir, target)
    # A random delay lands some kills in the middle of a step or a checkpoint write.
    time.sleep(rng.uniform(0.0, 0.4))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
    proc.communicate()
    kills.append(_logged_steps(workdir))
  proc = _start(workdir, shared)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  assert "resumed from step" in out
  print(f"{KILLS} SIGKILLs after logged steps {kills}; final run resumed and finished")
  assert _log(workdir) == _log(reference)
  assert [l["step"] for l in _log(workdir)] == list(range(1, STEPS + 1))
  _assert_same_bits(workdir, reference)


def test_sigterm_saves_current_step_and_resume_matches(reference, shared, tmp_path):
  workdir = str(tmp_path / "preempted")
  # No periodic checkpoints: the only one before the end is the one preemption writes.
  proc = _start(workdir, shared, checkpoint_every=1000)
  _wait_for_step(proc, workdir, 3)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err
  assert "preempted by SIGTERM at step" in err and "rerun the same command" in err
  stopped = int(err.split("preempted by SIGTERM at step ")[1].split(":")[0])
  # The checkpoint holds exactly the step the run stopped at: nothing is redone or lost.
  steps = sorted(int(n) for n in os.listdir(os.path.join(workdir, "vae", "checkpoints"))
                 if n.isdigit())
  assert steps[-1] == stopped and _logged_steps(workdir) == stopped
  proc = _start(workdir, shared)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  assert f"resumed from step {stopped}" in out
  assert _log(workdir) == _log(reference)
  _assert_same_bits(workdir, reference)
