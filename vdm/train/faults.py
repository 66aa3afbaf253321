"""What the training loop does when the world misbehaves: preemption, partial writes, NaNs, full disks.

Kept apart from `loop.py` so the loop reads as a loop; everything here is host-side and testable
without a model.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import warnings

NAN_POLICIES = ("skip", "stop")
# orbax writes a step to '<step>.orbax-checkpoint-tmp' and renames it when complete.
ORBAX_TMP_MARKER = ".orbax-checkpoint-tmp"


class Preempted(SystemExit):
  """Training stopped on SIGTERM/SIGINT after saving a checkpoint; rerunning resumes it.

  A SystemExit, so `vdm train` exits with 128 + signal number (the shell's convention) without a
  traceback; Python callers can catch it by this name.
  """

  def __init__(self, signum: int, step: int, directory: str):
    self.signum, self.step, self.directory = signum, step, directory
    super().__init__(128 + signum)

  def __str__(self) -> str:
    return (f"preempted by {signal.Signals(self.signum).name} at step {self.step}: checkpoint "
            f"saved in {self.directory}; rerun the same command to resume")


class NonFiniteError(FloatingPointError, ValueError):
  """Loss or gradients were NaN/Inf and the stage's nan_policy says stop.

  Also a ValueError, so the CLI reports it as a clear error (exit code 2) instead of a traceback.
  """


class PreemptionGuard(contextlib.AbstractContextManager):
  """Turns the first SIGTERM/SIGINT into a flag the loop polls between steps.

  The loop then checkpoints the current step and stops. A second signal gets the previous handler
  (Ctrl-C twice still kills at once). Outside the main thread signals cannot be caught, so the
  guard does nothing there.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    self.signum = signum
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
    return False


def truncate_metrics(path: str, step: int) -> int:
  """Keeps only the metrics lines a restored state has produced (step <= `step`); returns how
  many lines were dropped.

  Lines logged after the last checkpoint would be written again by the resumed run, and a kill
  mid-write can leave half a line: both are dropped, so the log matches an uninterrupted run's.
  The file is replaced atomically, so a kill here cannot lose the lines that stay.
  """
  if not os.path.exists(path):
    return 0
  kept, dropped = [], 0
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
        keep = line.endswith("\n") and int(record["step"]) <= step
      except (ValueError, KeyError, TypeError):
        keep = False
      if keep:
        kept.append(line)
      else:
        dropped += 1
  if dropped:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  return dropped


def partial_checkpoints(directory: str) -> list[str]:
  """Step directories that an interrupted or failed save left behind unfinished."""
  if not os.path.isdir(directory):
    return []
  return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                if ORBAX_TMP_MARKER in name)


def quarantine(path: str) -> str:
  """Moves an unreadable checkpoint aside (never deletes it) so its step can be written again."""
  parent, name = os.path.split(path.rstrip("/"))
  target = os.path.join(parent, f"unreadable-{name}-{int(time.time())}")
  os.replace(path, target)
  return target


def directory_size(path: str) -> int:
  """Bytes in the files under `path`."""
  total = 0
  for root, _, files in os.walk(path):
    for name in files:
      with contextlib.suppress(OSError):
        total += os.path.getsize(os.path.join(root, name))
  return total


def check_free_disk(directory: str, last_checkpoint: str | None) -> bool:
  """Warns when free space under `directory` is below twice the last checkpoint's size.

  Twice, because a save writes the new step beside the old one before the old one may be
  removed. Returns False when it warned.
  """
  if not last_checkpoint or not os.path.isdir(last_checkpoint):
    return True
  need = 2 * directory_size(last_checkpoint)
  free = shutil.disk_usage(directory).free
  if free < need:
    warnings.warn(f"only {free / 2**20:.1f} MiB free under {directory}; the next checkpoint "
                  f"needs about {need / 2**20:.1f} MiB (2 x the last one). A failed save keeps "
                  "the previous checkpoint, but training progress since it would be lost.",
                  ResourceWarning, stacklevel=2)
    return False
  return True


def report(message: str) -> None:
  """Fault messages go to stderr, unbuffered, so they survive a kill that follows."""
  print(message, file=sys.stderr, flush=True)


def nonfinite_message(desc: str, step: int, policy: str, loss: float, bad_tensors: list[str],
                      skips: int, max_skips: int, last_checkpoint: int | None) -> str:
  """The report for a non-finite step: which step, which tensors, what the policy did."""
  tensors = ", ".join(bad_tensors[:12]) + (" ..." if len(bad_tensors) > 12 else "")
  why = ("nan_policy='stop'" if policy == "stop"
         else f"{skips} skipped updates exceed max_nan_skips={max_skips}")
  return (f"[{desc}] non-finite values at step {step} ({why}): loss={loss}; non-finite "
          f"gradients in: {tensors or 'none (loss only)'}. The update was not applied; the last "
          f"checkpoint (step {last_checkpoint}) holds only finite parameters.")
