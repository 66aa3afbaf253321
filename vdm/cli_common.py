"""What every `vdm` subcommand shares: the one error line it prints for bad input, the check of
an output path before any work, and a parser that raises instead of exiting (vdm.cli,
vdm.data.cli, vdm.post.cli, vdm.generate.cli, vdm.ui)."""
from __future__ import annotations

import argparse
import os


class UsageError(ValueError):
  """A command line argparse refuses; its message is the line the command would print."""


class RaisingParser(argparse.ArgumentParser):
  """argparse that raises UsageError where it would print usage and exit (a subcommand's parser
  made by its add_subparsers is of the same class)."""

  def error(self, message):
    raise UsageError(f"{self.prog}: error: {message}")


def error_line(command: str, error: BaseException) -> str:
  """The one line a command prints for a bad input: 'vdm <command>: error: <message>'.

  A parse error that carries its `spec` and `position` (a --post pipeline) marks the position
  with ^ inside the spec; other multi-line messages are joined into one line."""
  if isinstance(getattr(error, "spec", None), str) and isinstance(
      getattr(error, "position", None), int):
    spec, at = error.spec, error.position
    message = f"{error.message} (--post at position {at}: {spec[:at]}^{spec[at:]})"
  elif isinstance(error, OSError) and error.strerror and error.filename:
    message = f"{error.filename}: {error.strerror}"
  else:
    message = str(error) or type(error).__name__
  return f"vdm {command}: error: " + " ".join(message.split())


def check_output_path(path: str, flag: str, *, folder: bool = False) -> None:
  """Refuses, before any work, an output path that cannot be written: a file where a folder is
  wanted (or the reverse), or a first existing parent that is a file or is not writable.
  Nothing is created. Raises ValueError naming the option."""
  kind = "folder" if folder else "file"
  if os.path.exists(path) and os.path.isdir(path) != folder:
    raise ValueError(f"{flag} {path!r} is a {'file' if folder else 'folder'}, not a {kind}")
  parent = os.path.abspath(path if folder and os.path.isdir(path) else os.path.dirname(
      os.path.abspath(path)))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"{flag} {path!r}: {parent!r} is a file, so the {kind} cannot be created")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"{flag} {path!r}: {parent!r} is not writable")
