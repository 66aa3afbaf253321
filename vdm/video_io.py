"""Video files through mediapy + the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg).

Writes are atomic: the file appears under its final name only once complete, so a run killed
halfway never leaves a truncated video where a finished one is expected.
"""
from __future__ import annotations

import os

import imageio_ffmpeg
import mediapy
import numpy as np

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())

VIDEO_SUFFIXES = (".mp4", ".gif")


def write_video(path: str, frames: np.ndarray, fps: int, *, overwrite: bool = False) -> None:
  """Writes uint8 frames [T, H, W, 3] to .mp4 (h264) or .gif."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in VIDEO_SUFFIXES:
    raise ValueError(f"--out {path!r}: the file name must end in one of {VIDEO_SUFFIXES}")
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"--out {path!r} exists; pass --overwrite to replace it")
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = f"{path}.partial{suffix}"
  kwargs = dict(codec="gif") if suffix == ".gif" else dict(crf=18)
  try:
    mediapy.write_video(partial, frames, fps=fps, **kwargs)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


class StreamingVideoWriter:
  """Appends frames to a video as they are produced; the file gets its final name only on a clean
  close (`with` block without an exception), so a killed run leaves no half video under it.

      with StreamingVideoWriter("out.mp4", fps=8) as writer:
        writer.add(frames)  # uint8 [t, H, W, 3], any number of times
  """

  def __init__(self, path: str, fps: int, *, overwrite: bool = False):
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in VIDEO_SUFFIXES:
      raise ValueError(f"--out {path!r}: the file name must end in one of {VIDEO_SUFFIXES}")
    if os.path.exists(path) and not overwrite:
      raise FileExistsError(f"--out {path!r} exists; pass --overwrite to replace it")
    self.path, self.fps, self.suffix = path, fps, suffix
    self.partial = f"{path}.partial{suffix}"
    self.writer = None
    self.frames = 0

  def __enter__(self) -> "StreamingVideoWriter":
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    return self

  def add(self, frames: np.ndarray) -> None:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if self.writer is None:
      kwargs = dict(codec="gif") if self.suffix == ".gif" else dict(crf=18)
      self.writer = mediapy.VideoWriter(self.partial, frames.shape[1:3], fps=self.fps, **kwargs)
      self.writer.__enter__()
    for frame in frames:
      self.writer.add_image(frame)
    self.frames += len(frames)

  def __exit__(self, exc_type, exc, tb) -> None:
    try:
      if self.writer is not None:
        self.writer.__exit__(exc_type, exc, tb)
      if exc_type is None and self.frames:
        os.replace(self.partial, self.path)
    finally:
      if os.path.exists(self.partial):
        os.remove(self.partial)


def read_video(path: str) -> np.ndarray:
  """Reads a video file to uint8 frames [T, H, W, 3]."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such video file: {path}")
  return np.asarray(mediapy.read_video(path))


def probe_video(path: str) -> tuple[int, int, int]:
  """(frames, height, width) of a video file, reading its header and first frame only; raises
  ValueError naming the file when it is not a readable video."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such video file: {path}")
  try:
    with mediapy.VideoReader(path) as reader:
      first = next(iter(reader), None)
      if first is None:
        raise ValueError("no frames")
      return reader.num_images, first.shape[0], first.shape[1]
  except Exception as e:  # noqa: BLE001 - ffmpeg reports corrupt files in many ways
    raise ValueError(f"{path!r} is not a readable video ({e})") from None
