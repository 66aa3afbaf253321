"""What is written beside every output so that it can be reproduced: the seed, the config and
the git commit (DESIGN: everything reproducible).

  git_commit()                       the commit of the vdm source tree
  write_json(path, payload)          atomic JSON (reports, manifests, sidecars)
  write_sidecar(out, payload)        OUT.json beside an output file OUT.mp4 (`vdm sample`, `vdm post`)
  write_provenance(model_dir, seed)  MODEL_DIR/provenance.json of an exported model

Standard library only, so every command can import it without loading a model library.
"""
from __future__ import annotations

import json
import os
import subprocess


def git_commit() -> str:
  """The commit of the vdm source tree, or 'unknown' outside a git checkout."""
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    return out.stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def write_json(path: str, payload: dict) -> None:
  """Writes JSON atomically (temp file + rename): a killed run leaves the old file or none."""
  partial = path + ".partial"
  with open(partial, "w") as f:
    json.dump(payload, f, indent=2, default=str)
  os.replace(partial, path)


def sidecar_path(out: str) -> str:
  """The sidecar of an output file: the same path with .json for its suffix."""
  return os.path.splitext(out)[0] + ".json"


def write_sidecar(out: str, payload: dict) -> str:
  """Writes `payload` (with its git_commit, seed and config as the caller records them) beside
  the output file `out`; returns the sidecar's path."""
  path = sidecar_path(out)
  write_json(path, payload)
  return path


def write_provenance(model_dir: str, seed: int) -> str:
  """Writes MODEL_DIR/provenance.json {git_commit, seed} (the config is its config.json);
  returns its path."""
  path = os.path.join(model_dir, "provenance.json")
  write_json(path, dict(git_commit=git_commit(), seed=seed))
  return path
