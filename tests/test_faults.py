"""Faults during training: failed checkpoint writes, partial checkpoints, NaNs, low disk, signals.

The loop is model-agnostic, so these tests train a two-layer autoencoder on the tiny synthetic
clips (real grain iterator, real orbax checkpoints) that compiles in a fraction of a second;
`test_resume.py` covers the real VAE end to end.
"""
import errno
import functools
import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from vdm.config import load_config
from vdm.data.loader import make_loader
from vdm.train import faults
from vdm.train.loop import train
from vdm.train.run import dataset_builder


class ToyAutoencoder(nnx.Module):
  """[B, 48] -> [B, 48] through an 8-wide bottleneck."""

  def __init__(self, rngs, width=8):
    self.encoder = nnx.Linear(48, width, rngs=rngs)
    self.decoder = nnx.Linear(width, 48, rngs=rngs)

  def __call__(self, x):
    return self.decoder(jnp.tanh(self.encoder(x)))


def toy_loss(model, batch, rng):
  """Denoising reconstruction of each clip's first frame, pooled to 4x4x3; NaN where scale is."""
  video = batch["video"].astype(jnp.float32) / 127.5 - 1.0  # [B, T, 16, 16, 3]
  b = video.shape[0]
  x = video[:, 0].reshape(b, 4, 4, 4, 4, 3).mean((2, 4)).reshape(b, 48)
  noisy = x + 0.1 * jax.random.normal(rng, x.shape)
  loss = jnp.mean((model(noisy) - x) ** 2) * batch["scale"]
  return loss, dict(mse=loss)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  base = tmp_path_factory.mktemp("faults")
  config = load_config("configs/spine.py:tiny", [f"data.data_dir={str(base / 'data')!r}"])
  return config, dataset_builder(config, str(base))


def _train(setup, workdir, *, steps, nan_at=(), width=8, **cfg_overrides):
  """Trains the toy model; the loss is multiplied by NaN at the (1-based) steps in `nan_at`."""
  config, builder = setup
  cfg = config.train.vae.copy_and_resolve_references()
  cfg.update(dict(dict(steps=steps, checkpoint_every=1, log_every=1), **cfg_overrides))
  calls = []

  def prepare(batch):
    calls.append(None)
    return dict(video=batch["video"],
                scale=np.float32(np.nan if len(calls) in nan_at else 1.0))

  loader = make_loader(builder, "train", batch_size=cfg.batch_size, seed=config.seed)
  return train(ToyAutoencoder(nnx.Rngs(config.seed), width), toy_loss, loader, cfg, str(workdir),
               seed=config.seed, prepare_batch=prepare, desc="toy")


def _checkpoint(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


def _same_bits(a, b):
  return all(np.asarray(x).tobytes() == np.asarray(y).tobytes()
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_failed_checkpoint_write_keeps_the_previous_one(setup, tmp_path, monkeypatch, capsys):
  """ENOSPC halfway through a save: the half-written step is skipped, step 2 restores intact."""
  workdir = str(tmp_path / "w")
  _train(setup, workdir, steps=2, checkpoint_every=2)
  before = _checkpoint(workdir, 2)

  from grain._src.python.checkpoint import handler as grain_handler

  def disk_full(self, directory, item=None, args=None):
    (directory / "process_0-of-1.json").write_text('{"half": ')  # a partial file, then ENOSPC
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(grain_handler.CheckpointHandler, "save", disk_full)
  with pytest.raises(OSError, match="No space left"):
    _train(setup, workdir, steps=4, checkpoint_every=2)
  assert "the previous checkpoint (step 2) is intact" in capsys.readouterr().err
  monkeypatch.undo()

  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(ckpt_dir)) == ["2", "4" + faults.ORBAX_TMP_MARKER]
  assert _same_bits(_checkpoint(workdir, 2), before)
  # Resuming reports the partial step, continues from step 2 and logs each step once.
  _train(setup, workdir, steps=4, checkpoint_every=2)
  assert "skipping partial checkpoint" in capsys.readouterr().err
  assert sorted(os.listdir(ckpt_dir)) == ["2", "4"]
  steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == [1, 2, 3, 4]


def test_unreadable_checkpoint_is_moved_aside(setup, tmp_path, capsys):
  """A finalized step whose files are damaged (e.g. the disk lied) falls back to the one before."""
  workdir = str(tmp_path / "w")
  _train(setup, workdir, steps=2)
  state_dir = os.path.join(workdir, "checkpoints", "2", "state")
  shutil.rmtree(state_dir)
  os.makedirs(state_dir)
  _train(setup, workdir, steps=2)
  err = capsys.readouterr().err
  assert "checkpoint step 2 is unreadable" in err and "dropped 1 metrics line" in err
  names = os.listdir(os.path.join(workdir, "checkpoints"))
  assert "1" in names and "2" in names and any(n.startswith("unreadable-2-") for n in names)


def test_changed_model_is_refused_and_nothing_is_moved(setup, tmp_path):
  """When no checkpoint restores, a changed model is likelier than damage: stop, touch nothing."""
  workdir = str(tmp_path / "w")
  _train(setup, workdir, steps=1)
  with pytest.raises(ValueError, match="no checkpoint .* restores"):
    _train(setup, workdir, steps=1, width=4)
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["1"]


def test_nan_step_is_skipped_and_never_reaches_the_state(setup, tmp_path, capsys):
  workdir = str(tmp_path / "w")
  _train(setup, workdir, steps=2, nan_at=(2,), nan_policy="skip", max_nan_skips=1)
  assert "step 2: non-finite loss or gradients" in capsys.readouterr().err
  log = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["nan_skips"] for l in log] == [0, 1] and np.isnan(log[1]["loss"])
  # Step 2's update was dropped whole: params, Adam moments and EMA equal step 1's bit for bit,
  # while the step counter (hence the next batch and RNG) moved on.
  one, two = _checkpoint(workdir, 1), _checkpoint(workdir, 2)
  for key in ("params", "opt_state", "ema"):
    assert _same_bits(one[key], two[key]), key
  assert int(one["step"]) == 1 and int(two["step"]) == 2


@pytest.mark.parametrize("overrides, why", [
    (dict(nan_policy="stop"), "nan_policy='stop'"),
    (dict(nan_policy="skip", max_nan_skips=0), "exceed max_nan_skips=0"),
])
def test_nan_stops_with_a_report(setup, tmp_path, overrides, why):
  workdir = str(tmp_path / "w")
  with pytest.raises(faults.NonFiniteError) as info:
    _train(setup, workdir, steps=3, nan_at=(2,), **overrides)
  message = str(info.value)
  assert "at step 2" in message and why in message and "loss=nan" in message
  # Names the offending parameter tensors.
  assert "encoder.kernel" in message and "decoder.bias" in message
  # Nothing from the bad step was checkpointed.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1"]


def test_truncate_metrics_drops_later_and_partial_lines(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 2.0}\n{"step": 3, "loss": 3.0}\n'
            '{"step": 4, "lo')
  assert faults.truncate_metrics(path, 2) == 2
  assert [json.loads(l)["step"] for l in open(path)] == [1, 2]
  assert faults.truncate_metrics(path, 2) == 0
  assert faults.truncate_metrics(str(tmp_path / "missing.jsonl"), 0) == 0


def test_low_disk_warns(tmp_path, monkeypatch):
  last = tmp_path / "checkpoints" / "3"
  last.mkdir(parents=True)
  (last / "blob").write_bytes(b"x" * 4096)
  assert faults.check_free_disk(str(tmp_path), str(last))
  monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**6, 10**6, 100))
  with pytest.warns(ResourceWarning, match="free under"):
    assert not faults.check_free_disk(str(tmp_path), str(last))


def test_preemption_guard_turns_a_signal_into_a_flag():
  before = signal.getsignal(signal.SIGTERM)
  with faults.PreemptionGuard() as guard:
    os.kill(os.getpid(), signal.SIGTERM)
    assert guard.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before
  error = faults.Preempted(signal.SIGTERM, 7, "/w/checkpoints")
  assert error.code == 128 + signal.SIGTERM and "step 7" in str(error)
