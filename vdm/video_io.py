"""Video and sound files through mediapy + the ffmpeg binary that imageio-ffmpeg ships (no
system ffmpeg): .mp4 (h264, with an AAC soundtrack when given one), .gif, .wav (16-bit PCM).

Writes are atomic: the file appears under its final name only once complete, so a run killed
halfway never leaves a truncated video where a finished one is expected.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from typing import Iterator

import imageio_ffmpeg
import mediapy
import numpy as np

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())

VIDEO_SUFFIXES = (".mp4", ".gif")
AUDIO_BITRATE = "128k"  # of the AAC track of an .mp4 with sound


def write_video(path: str, frames: np.ndarray, fps: int, *, overwrite: bool = False,
                audio: np.ndarray | None = None, sample_rate: int = 0) -> None:
  """Writes uint8 frames [T, H, W, 3] to .mp4 (h264) or .gif; with audio (float [N] in [-1, 1]
  at sample_rate) an .mp4 gets it as an AAC track (muxed by ffmpeg)."""
  suffix = os.path.splitext(path)[1].lower()
  if audio is not None and suffix != ".mp4":
    raise ValueError(f"--out {path!r}: a video with sound must be .mp4 (a GIF has no sound)")
  if suffix not in VIDEO_SUFFIXES:
    raise ValueError(f"--out {path!r}: the file name must end in one of {VIDEO_SUFFIXES}")
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"--out {path!r} exists; pass --overwrite to replace it")
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = f"{path}.partial{suffix}"
  silent, wav = f"{path}.silent{suffix}", f"{path}.partial.wav"
  kwargs = dict(codec="gif") if suffix == ".gif" else dict(crf=18)
  try:
    if audio is None:
      mediapy.write_video(partial, frames, fps=fps, **kwargs)
    else:
      mediapy.write_video(silent, frames, fps=fps, **kwargs)
      write_wav(wav, audio, sample_rate, overwrite=True)
      mux_audio(silent, wav, partial)
    os.replace(partial, path)
  finally:
    for leftover in (partial, silent, wav):
      if os.path.exists(leftover):
        os.remove(leftover)


def mux_audio(video_path: str, wav_path: str, out: str) -> None:
  """Copies the video stream of `video_path` and encodes `wav_path` as AAC beside it into
  `out` (.mp4); raises ValueError with ffmpeg's reason if it fails."""
  proc = subprocess.run(
      [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", video_path,
       "-i", wav_path, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
       "-b:a", AUDIO_BITRATE, out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  if proc.returncode != 0:
    reason = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
    raise ValueError(f"ffmpeg could not add the sound to {out!r}: "
                     f"{reason[-1] if reason else proc.returncode}")


def write_wav(path: str, audio: np.ndarray, sample_rate: int, *, overwrite: bool = False) -> None:
  """Writes mono audio float [N] in [-1, 1] as a 16-bit PCM .wav, atomically."""
  import wave
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path!r} exists; pass --overwrite to replace it")
  audio = np.asarray(audio, np.float64)
  if audio.ndim != 1 or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
    raise ValueError(f"audio must be [N] with a sample rate > 0, got {audio.shape} at "
                     f"{sample_rate!r}")
  pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = f"{path}.partial"
  try:
    with wave.open(partial, "wb") as f:
      f.setnchannels(1)
      f.setsampwidth(2)
      f.setframerate(int(sample_rate))
      f.writeframes(pcm.tobytes())
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def read_audio(path: str, sample_rate: int, *, flag: str = "audio", samples: int | None = None
               ) -> np.ndarray:
  """The first audio stream of any file ffmpeg reads (.wav, .mp3, an .mp4's track ...), mixed
  to mono and resampled to `sample_rate`: float32 [N] in [-1, 1]. With `samples`, cut or padded
  with silence to that length. Raises ValueError naming `flag` for a missing file or one with
  no readable sound."""
  if not isinstance(path, str) or not os.path.isfile(path):
    raise ValueError(f"{flag} {path!r}: no such file")
  proc = subprocess.run(
      [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path, "-map",
       "0:a:0", "-ac", "1", "-ar", str(int(sample_rate)), "-f", "s16le", "pipe:1"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  audio = np.frombuffer(proc.stdout, "<i2").astype(np.float32) / 32767.0
  if proc.returncode != 0 or not audio.size:
    lines = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
    reason = lines[-1] if lines else "no audio stream"
    raise ValueError(f"{flag} {path!r} has no readable sound ({reason[:200]})")
  if samples is not None:
    audio = np.pad(audio[:samples], (0, max(0, samples - len(audio))))
  return audio


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


def _not_readable(path: str, error: Exception) -> ValueError:
  """A one-line ValueError naming the file and ffmpeg's own reason it does not decode."""
  try:
    reason = probe_timeline(path).failure
  except OSError:
    reason = None
  if not reason:
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    reason = lines[0] if lines else type(error).__name__
  return ValueError(f"{path!r} is not a readable video ({reason[:200]})")


def read_video(path: str) -> np.ndarray:
  """Reads a video file to uint8 frames [T, H, W, 3]; raises ValueError naming the file when it
  is not a readable video."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such video file: {path}")
  try:
    return np.asarray(mediapy.read_video(path))
  except RuntimeError as e:  # mediapy's report of an ffmpeg failure
    raise _not_readable(path, e) from None


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
    raise _not_readable(path, e) from None


@dataclasses.dataclass(frozen=True)
class Timeline:
  """What a player shows of a file's first video stream, from one decode that keeps no pixels.

  `pts` and `durations` are float64 [N] seconds: each decoded frame's presentation time and the
  duration it declares (0 where it declares none). `damage` lists what the demuxer found wrong
  with the data (its errors, packets it flagged corrupt, a missing GIF trailer); it does not
  depend on thread timing, so the same file always gets the same list. `decoder_errors` lists
  the video decoder's errors, which ffmpeg's threaded pipeline may or may not log at the end of
  a damaged stream and which some valid streams log before their first key frame. `failure` is
  ffmpeg's reason when it exits with an error, else None.
  """
  pts: np.ndarray
  durations: np.ndarray
  size: tuple[int, int]             # (height, width) of the decoded frames; (0, 0) if none
  fps: float                        # the stream header's frame rate; 0 if it states none
  container_seconds: float | None   # the container's duration; None if it declares none
  # End of the video stream's last packet as stored, also counting packets that show no new
  # frame (an AVI's empty chunks that hold a frame, frames an mp4 edit list hides).
  packets_end: float | None
  audio_end: float | None           # end of the first audio stream's last packet, if any
  container: str | None             # the demuxer's name ('mov,mp4,...', 'avi'); None if unread
  has_video: bool
  damage: tuple[str, ...]
  decoder_errors: tuple[str, ...]
  failure: str | None

  @property
  def frame_period(self) -> float:
    """Seconds of one frame at the header's rate (else the median timestamp step; else 0)."""
    if self.fps > 0:
      return 1.0 / self.fps
    steps = np.diff(self.pts)
    return float(np.median(steps)) if steps.size else 0.0

  @property
  def end(self) -> float:
    """When the last decoded frame's own duration ends: its timestamp plus its duration (or
    one frame)."""
    if not self.pts.size:
      return 0.0
    last = float(self.durations[-1]) if self.durations[-1] > 0 else self.frame_period
    return float(self.pts[-1]) + last


def _ffmpeg_exe() -> str:
  return imageio_ffmpeg.get_ffmpeg_exe()


# A log line of `-loglevel level+info`: '[comp @ 0x..] [comp2 @ 0x..] [level] message'.
_LOG_LINE = re.compile(r"^((?:\[[^\]]*\] )*)\[(trace|debug|verbose|info|warning|error|fatal|"
                       r"panic)\] (.*)$")
_COMPONENT = re.compile(r"\[([^\]]+?) @ 0x[0-9a-fA-F]+\]")
# ffmpeg's own (command-line tool) log components, as opposed to a demuxer's or decoder's.
_CLI_COMPONENT = re.compile(r"^[a-z]+#\d")  # 'in#0/avi', 'vist#0:0/h264', 'vf#0:0', 'out#0/...'


def _framecrc(text: str) -> tuple[dict[int, float], dict[int, tuple[int, int]],
                                   dict[int, list[tuple[int, int]]]]:
  """framecrc output -> ({stream: time base in seconds}, {stream: (height, width)},
  {stream: [(pts, duration) in its time base, one per packet]})."""
  time_bases, sizes, packets = {}, {}, {}
  for line in text.splitlines():
    if m := re.match(r"#tb (\d+): (\d+)/(\d+)", line):
      time_bases[int(m.group(1))] = int(m.group(2)) / int(m.group(3))
    elif m := re.match(r"#dimensions (\d+): (\d+)x(\d+)", line):
      sizes[int(m.group(1))] = (int(m.group(3)), int(m.group(2)))
    elif not line.startswith("#"):
      fields = [f.strip() for f in line.split(",")]
      if len(fields) >= 5 and all(re.fullmatch(r"-?\d+", f) for f in fields[:4]):
        packets.setdefault(int(fields[0]), []).append((int(fields[2]), int(fields[3])))
  return time_bases, sizes, packets


def probe_timeline(path: str) -> Timeline:
  """Decodes a file's first video stream once, keeping no pixels: every frame's timestamp, the
  container's duration, where the stored video and audio packets end and everything the demuxer
  or the decoder reports."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such video file: {path}")
  # The framecrc muxer lists on stdout (one writer thread) the decoded frames' timestamps in the
  # demuxer's own time base (output stream 0), the video packets as stored (1) and the audio
  # packets (2), both copied, never decoded; stderr carries the input's description and the
  # errors, one message a line.
  proc = subprocess.run(
      [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
       "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough", "-enc_time_base:v:0", "demux",
       "-map", "0:v:0", "-c:v:1", "copy", "-map", "0:a:0?", "-c:a", "copy",
       "-f", "framecrc", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  time_bases, sizes, packets = _framecrc(proc.stdout.decode("ascii", errors="replace"))

  def seconds(stream):  # float [n, 2]: (pts, duration) in seconds; packets without pts dropped
    rows = np.asarray([p for p in packets.get(stream, []) if p[0] > -2**62], np.float64)
    return rows.reshape(-1, 2) * time_bases.get(stream, 0.0)

  video, stored, audio = seconds(0), seconds(1), seconds(2)
  fps, duration, demuxer, has_video = 0.0, None, None, False
  damage, decoder_errors, decoders, specific, generic, errors = [], [], set(), [], [], []
  for raw in proc.stderr.decode("utf-8", errors="replace").splitlines():
    match = _LOG_LINE.match(raw)
    if not match:
      continue
    prefix, level, message = match.groups()
    message = message.strip()
    components = _COMPONENT.findall(prefix)
    if not components and level == "info":  # the input's description
      if m := re.match(r"Input #0, (.+), from '", message):
        demuxer = m.group(1)
      elif m := re.match(r"Duration: (\d+):(\d+):([\d.]+)", message):
        duration = 3600 * int(m.group(1)) + 60 * int(m.group(2)) + float(m.group(3))
      elif not has_video and re.match(r"Stream #0:\d+.*: Video: ", message):
        has_video = True
        if m := re.search(r", ([\d.]+)(k?) (?:fps|tbr)", message):
          fps = float(m.group(1)) * (1000 if m.group(2) else 1)
      elif m := re.match(r"Stream #0:\d+ -> #0:0 \((\S+) \((\S+)\)", message):
        decoders = {m.group(1), m.group(2)} - {"native"}  # the video codec's and decoder's names
    elif "corrupt input packet" in message:  # the demuxer flagged a packet (warning level)
      damage.append(message)
    elif level in ("error", "fatal", "panic"):
      errors.append((components, message))
  # Classified once the whole log is read: a demuxer may report before it is named.
  for components, message in errors:
    own = {c.removeprefix("dec:") for c in components if not _CLI_COMPONENT.match(c)}
    (specific if own else generic).append(message)
    if own & decoders or any(c.startswith("vist#") for c in components):
      decoder_errors.append(message)
    elif demuxer in own:
      damage.append(message)
  if demuxer == "gif" and video.size:
    with open(path, "rb") as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\x3b":
        damage.append("the GIF ends without its trailer byte")
  failure = None
  if proc.returncode != 0:
    # The demuxer's or decoder's own line ('moov atom not found') names the fault; ffmpeg's
    # closing 'Error opening input' lines are generic.
    failure = "; ".join(dict.fromkeys(specific or generic[-1:]
                                      or [f"ffmpeg exited with code {proc.returncode}"]))
  return Timeline(pts=video[:, 0], durations=video[:, 1],
                  size=sizes.get(0, (0, 0)), fps=fps,
                  container_seconds=duration,
                  packets_end=float(stored.sum(1).max()) if stored.size else None,
                  audio_end=float(audio.sum(1).max()) if audio.size else None,
                  container=demuxer, has_video=has_video, damage=tuple(dict.fromkeys(damage)),
                  decoder_errors=tuple(dict.fromkeys(decoder_errors)), failure=failure)


def iter_frames(path: str, size: tuple[int, int]) -> Iterator[np.ndarray]:
  """Yields every decoded frame of the first video stream, uint8 [H, W, 3] with (H, W) = size
  (`probe_timeline`'s), in the order and number `probe_timeline` counts them (no frame is
  dropped or repeated to make the rate constant). Stopping early ends the decoder."""
  height, width = size
  proc = subprocess.Popen(
      [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:v:0",
       "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  nbytes = height * width * 3
  try:
    while True:
      data = proc.stdout.read(nbytes)
      if len(data) < nbytes:
        return
      yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
  finally:
    proc.stdout.close()
    if proc.poll() is None:
      proc.kill()
    proc.wait()

