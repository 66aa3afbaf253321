"""`vdm data import DIR --out NAME`: a folder of the user's videos -> a TFDS dataset.

Each video file (mp4, webm, avi, mov, mkv, m4v, gif) is decoded with ffmpeg (the binary that
imageio-ffmpeg ships), resampled to `fps` along its frames' own timestamps (a frame is shown
until the next one's: variable-frame-rate files keep their real duration), put in the nearest
aspect bucket (1:1, 16:9, 9:16) at `short_side`, resized to cover it and centre-cropped, and cut
to the longest duration bucket (`lengths`) it fills; its caption is the sidecar `<name>.txt`
beside it, or the file name. Byte-identical files are imported once.

Robust by construction: a file that cannot be read, is empty, truncated (judged as a player
would see it: its data stops before the duration its container declares, or the demuxer reports
missing or corrupt data), too short, a duplicate or not a video is skipped and listed with its
reason in the report; nothing raises. Each clip is staged under `<data_dir>/<name>_staging/`
(written atomically, recorded in a manifest after every file), so an interrupted import loses
nothing: a rerun skips what is staged and then (re)builds the TFDS dataset from the staging
folder. Each bucket becomes one split named `<height>x<width>_t<frames>`, so every split has
static shapes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from vdm import video_io  # Sets mediapy's ffmpeg to imageio-ffmpeg's binary.
from vdm.data.aspect_ratios import ASPECTS, aspect_size
from vdm.provenance import write_json

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v", ".gif")
SIDECAR_SUFFIX = ".txt"
# Raised whenever the rules that skip a file change, so that files an earlier version skipped
# are judged again on a rerun (imported clips stay valid).
JUDGE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class ImportOptions:
  short_side: int = 64
  fps: int = 8
  # 1 + 2k frames: what the causal VAE (temporal stride 2) takes, so `vdm train` reads the buckets.
  lengths: tuple[int, ...] = (17, 33)
  aspects: tuple[str, ...] = ("1:1", "16:9", "9:16")


def staging_dir(data_dir: str, name: str) -> str:
  return os.path.join(data_dir, f"{name}_staging")


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def caption_for(path: str) -> str:
  """The sidecar .txt's text (whitespace collapsed), else the file name with _ and - as spaces."""
  sidecar = os.path.splitext(path)[0] + SIDECAR_SUFFIX
  if os.path.isfile(sidecar):
    with open(sidecar, encoding="utf-8", errors="replace") as f:
      text = " ".join(f.read().split())
    if text:
      return text
  stem = os.path.splitext(os.path.basename(path))[0]
  return " ".join(stem.replace("_", " ").replace("-", " ").split())


def nearest_aspect(height: int, width: int, aspects) -> str:
  """The aspect bucket closest to height x width in log aspect ratio."""
  ratio = np.log(width / height)
  return min(aspects, key=lambda a: abs(ratio - np.log(
      ASPECTS[a][1] / ASPECTS[a][0])))


def resize_cover_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [h, w, 3] -> [height, width, 3]: scaled (antialiased) to cover, centre-cropped."""
  from PIL import Image
  h, w = frame.shape[:2]
  scale = max(height / h, width / w)
  sh, sw = max(height, int(np.ceil(h * scale - 1e-6))), max(width, int(np.ceil(w * scale - 1e-6)))
  image = Image.fromarray(frame).resize((sw, sh), Image.BICUBIC)
  top, left = (sh - height) // 2, (sw - width) // 2
  return np.asarray(image)[top:top + height, left:left + width]


class SkipFile(Exception):
  """A file that cannot be imported; the message is the reason shown in the report."""


def _tolerance(timeline: video_io.Timeline) -> float:
  """How far before the container's declared end a complete file's frames may stop: a frame and
  a half (the last frame's own duration or the header's rate, whichever is longer) plus the
  10 ms that ffmpeg rounds the declared duration to."""
  return 1.5 * max(timeline.frame_period, float(timeline.durations[-1])) + 0.01


def judge(timeline: video_io.Timeline) -> float:
  """The time (seconds) at which what a player shows of the file ends; raises SkipFile with the
  reason when nothing decodes, or the data is cut short or damaged.

  A file is truncated when its data (decoded frames, stored video packets, audio) stops short of
  the duration its container declares, or when the demuxer reports missing or corrupt data. The
  frame count the header implies is no measure: a variable-frame-rate file holds frames for
  several ticks, so it decodes to fewer frames than its duration times its header's rate.
  """
  t = timeline
  count = int(t.pts.size)
  if not count:
    if t.container and not t.has_video:
      raise SkipFile(f"no video stream (a {t.container} file)")
    if t.damage:
      raise SkipFile(f"truncated or corrupt: {t.damage[0]} (no frame decodes)")
    raise SkipFile(f"cannot decode: {(t.failure or 'no frames')[:200]}")
  h, w = t.size
  if h < 2 or w < 2:
    raise SkipFile(f"no usable video stream ({w}x{h})")
  declared = t.container_seconds
  data_end = max(t.end, t.packets_end or 0.0, t.audio_end or 0.0)
  if declared and data_end < declared - _tolerance(t):
    why = f" ({t.damage[0]})" if t.damage else ""
    raise SkipFile(f"truncated: decoded {count} frames ending at {t.end:.2f} s of the "
                   f"{declared:.2f} s its header declares{why}")
  if t.damage:
    raise SkipFile(f"truncated or corrupt: {t.damage[0]} ({count} frames decode, up to "
                   f"{t.end:.2f} s)")
  if t.failure:  # ffmpeg stopped with an error after some frames
    raise SkipFile(f"truncated or corrupt: {t.failure[:200]} ({count} frames decode)")
  # The last frame stays on screen while the video stream's packets go on (held frames), but
  # not past the declared duration (an edit list may hide the packets after it) nor under audio.
  held = min(t.packets_end or 0.0, declared or np.inf)
  return max(t.end, held)


def resampled_indices(pts: np.ndarray, end: float, fps: float) -> np.ndarray:
  """Which source frame is on screen at each output time pts[0] + k / fps before `end`.

  A frame stays on screen until the next frame's timestamp (nearest previous frame), so frames
  held for several ticks repeat and frames closer together than 1 / fps are dropped.
  pts: float [N] seconds, in display order; returns int64 [round((end - pts[0]) * fps)] (>= 1).
  """
  pts = np.maximum.accumulate(np.asarray(pts, np.float64))  # a step back in time shows nothing new
  count = max(1, int(np.floor((end - pts[0]) * fps + 0.5)))
  times = pts[0] + np.arange(count) / fps
  # 1e-9 s: a frame exactly at an output time is the one shown then, despite float rounding.
  return np.searchsorted(pts, times + 1e-9, side="right") - 1


def decode_clip(path: str, options: ImportOptions) -> tuple[np.ndarray, dict]:
  """Decodes one file into its bucket: (uint8 [T, H, W, 3], info). Raises SkipFile.

  The file is resampled to `options.fps` along its frames' own timestamps, so a variable-frame-
  rate clip keeps its real duration; the clip is its first T frames, T the longest bucket length
  that fits.
  """
  if os.path.getsize(path) == 0:
    raise SkipFile("empty file (0 bytes)")
  timeline = video_io.probe_timeline(path)
  end = judge(timeline)
  pts = timeline.pts
  source_seconds = end - float(pts[0])
  shown = resampled_indices(pts, end, options.fps)
  fits = [L for L in options.lengths if L <= len(shown)]
  if not fits:
    raise SkipFile(f"too short: {pts.size} frames over {source_seconds:.2f} s give {len(shown)} "
                   f"at {options.fps} fps, the shortest bucket is {min(options.lengths)}")
  length = max(fits)
  shown = shown[:length]
  h, w = timeline.size
  aspect = nearest_aspect(h, w, options.aspects)
  height, width = aspect_size(aspect, options.short_side)
  wanted, last = set(shown.tolist()), int(shown[-1])
  picked = {}
  for i, frame in enumerate(video_io.iter_frames(path, timeline.size)):
    if i in wanted:
      picked[i] = resize_cover_crop(frame, height, width)
    if i >= last:
      break  # the rest of the file is not part of the clip
  if len(picked) < len(wanted):
    raise SkipFile(f"cannot decode: frame {min(wanted - picked.keys())} did not decode on the "
                   f"second read")
  video = np.stack([picked[i] for i in shown.tolist()])
  info = dict(aspect=aspect, source_fps=timeline.fps or round(pts.size / source_seconds, 3),
              source_frames=int(pts.size), source_seconds=round(source_seconds, 3),
              source_size=[int(h), int(w)], frames=length, seconds=length / options.fps)
  if timeline.decoder_errors:  # kept as a warning: valid streams log some (see Timeline)
    info["decoder_errors"] = list(timeline.decoder_errors[:3])
  return video, info


def bucket_name(video: np.ndarray) -> str:
  """Split name of a clip's bucket, e.g. '144x256_t16'."""
  t, h, w = video.shape[:3]
  return f"{h}x{w}_t{t}"


def load_manifest(path: str) -> dict:
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  return {"files": {}}


def _scan(src_dir: str) -> list[str]:
  paths = []
  for root, dirs, files in os.walk(src_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    paths.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
  return sorted(paths)


# What the report says of each imported clip beside its split and caption.
_REPORTED = ("frames", "seconds", "source_frames", "source_seconds", "source_fps",
             "decoder_errors")


def import_folder(src_dir: str, name: str, data_dir: str,
                  options: ImportOptions = ImportOptions(), log=print) -> dict:
  """Imports every video under src_dir into dataset `name` under data_dir; returns the report:
  {'imported': [{path, split, caption, frames, seconds, source_frames, source_seconds,
  source_fps}], 'skipped': [{path, reason}], 'splits': {split: n}, 'dataset_dir': str} (frames
  and seconds: the clip at `options.fps`; source_*: what the file shows). Also written to
  <staging>/report.json. Rerunning resumes.
  """
  if not os.path.isdir(src_dir):
    raise FileNotFoundError(f"not a folder: {src_dir}")
  if not name or not name.replace("_", "").isalnum():
    raise ValueError(f"--out must be letters, digits and _, got {name!r}")
  stage = staging_dir(data_dir, name)
  os.makedirs(stage, exist_ok=True)
  manifest_path = os.path.join(stage, "manifest.json")
  manifest = load_manifest(manifest_path)
  wanted = json.loads(json.dumps(dataclasses.asdict(options)))  # tuples as JSON lists
  if manifest.setdefault("options", wanted) != wanted:
    raise ValueError(f"{stage} was imported with other options {manifest['options']}; "
                     f"use another --out or the same options")
  files = manifest["files"]
  by_hash = {e["sha256"]: rel for rel, e in files.items() if e.get("status") == "imported"}
  for path in _scan(src_dir):
    rel = os.path.relpath(path, src_dir)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == SIDECAR_SUFFIX:
      continue
    stat = os.stat(path)
    key = [stat.st_size, stat.st_mtime_ns]
    earlier = files.get(rel)
    if earlier and earlier.get("key") == key and (
        earlier["status"] == "imported" or earlier.get("judge") == JUDGE_VERSION):
      continue  # Staged (or judged by the same rules) in an earlier run.
    entry = dict(key=key, judge=JUDGE_VERSION)
    if suffix not in VIDEO_SUFFIXES:
      entry.update(status="skipped", reason=f"not a video file type ({suffix or 'no suffix'})")
    else:
      digest = _sha256(path)
      entry["sha256"] = digest
      if digest in by_hash and by_hash[digest] != rel:
        entry.update(status="skipped", reason=f"duplicate of {by_hash[digest]}")
      else:
        try:
          video, info = decode_clip(path, options)
          clip = os.path.join(stage, f"{digest[:16]}.npz")
          partial = clip + ".partial.npz"
          np.savez(partial, video=video)
          os.replace(partial, clip)
          entry.update(status="imported", clip=os.path.basename(clip), caption=caption_for(path),
                       split=bucket_name(video), **info)
          by_hash[digest] = rel
        except SkipFile as e:
          entry.update(status="skipped", reason=str(e))
    files[rel] = entry
    write_json(manifest_path, manifest)  # After every file: an interrupt loses none.
    note = entry.get("reason") or (entry.get("decoder_errors") and
                                   "decoder reported " + "; ".join(entry["decoder_errors"]))
    log(f"{entry['status']:>8} {rel}" + (f": {note}" if note else ""))
  # Files that disappeared since an earlier run are no longer part of the dataset.
  present = {os.path.relpath(p, src_dir) for p in _scan(src_dir)}
  for rel in [r for r in files if r not in present]:
    del files[rel]
  write_json(manifest_path, manifest)
  builder = _build(data_dir, name, manifest)
  report = dict(
      imported=[dict(path=r, split=e["split"], caption=e["caption"],
                     **{k: e[k] for k in _REPORTED if k in e})
                for r, e in sorted(files.items()) if e["status"] == "imported"],
      skipped=[dict(path=r, reason=e["reason"]) for r, e in sorted(files.items())
               if e["status"] == "skipped"],
      splits=({s: i.num_examples for s, i in builder.info.splits.items()} if builder else {}),
      dataset_dir=str(builder.data_path) if builder else None)
  write_json(os.path.join(stage, "report.json"), report)
  return report


@dataclasses.dataclass(eq=False)
class FolderVideosConfig(tfds.core.BuilderConfig):
  staging: str = ""
  # The bucket that `as_data_source()` also offers as 'train' (what the training loop reads);
  # '' offers the buckets alone.
  train_split: str = ""


class FolderVideos(tfds.core.GeneratorBasedBuilder):
  """Clips imported from a folder by `import_folder`; one split per (size, length) bucket."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [FolderVideosConfig(name="default")]
  code_path = epath.Path(__file__)
  pkg_dir_path = epath.Path(__file__).parent

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "caption": tfds.features.Text(),
            "source": tfds.features.Text(),
        }),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    manifest = load_manifest(os.path.join(self.builder_config.staging, "manifest.json"))
    entries = sorted((r, e) for r, e in manifest["files"].items() if e["status"] == "imported")
    splits = sorted({e["split"] for _, e in entries})
    return {s: self._generate_examples([(r, e) for r, e in entries if e["split"] == s])
            for s in splits}

  def as_data_source(self, split=None, **kwargs):
    """TFDS's data sources; with no split asked for, the configured bucket is also 'train'."""
    sources = super().as_data_source(split, **kwargs)
    alias = self.builder_config.train_split
    if split is None and alias:
      if alias not in sources:
        raise ValueError(f"imported dataset {self.builder_config.name!r} has no bucket "
                         f"{alias!r} (data.height x data.width, data.frames); it has "
                         f"{sorted(sources)}")
      sources = dict(sources, train=sources[alias])
    return sources

  def _generate_examples(self, entries):
    for rel, entry in entries:
      with np.load(os.path.join(self.builder_config.staging, entry["clip"])) as clip:
        video = clip["video"]
      yield rel, dict(video=video, caption=entry["caption"], source=rel)


def load_builder(data_dir: str, name: str, train_split: str = "") -> FolderVideos:
  """The FolderVideos builder of an imported dataset `name` (as written by import_folder);
  `train_split` (a bucket, e.g. '32x32_t17') is also offered as its 'train' split."""
  config = FolderVideosConfig(name=name, staging=staging_dir(data_dir, name),
                              train_split=train_split)
  return FolderVideos(config=config, data_dir=data_dir, file_format="array_record")


def _build(data_dir: str, name: str, manifest: dict) -> FolderVideos | None:
  builder = load_builder(data_dir, name)
  staged = sorted(r for r, e in manifest["files"].items() if e["status"] == "imported")
  digest = hashlib.sha256(json.dumps(staged).encode()).hexdigest()
  stamp = os.path.join(staging_dir(data_dir, name), "built.sha256")
  current = open(stamp).read() if os.path.isfile(stamp) else ""
  if builder.is_prepared() and current == digest:
    return builder
  if not staged:
    return None  # Nothing to build; the report lists why each file was skipped.
  # The TFDS folder is derived data: rebuild it whole from the staging folder.
  if os.path.isdir(str(builder.data_path)):
    shutil.rmtree(str(builder.data_path))
  builder = load_builder(data_dir, name)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  with open(stamp + ".partial", "w") as f:
    f.write(digest)
  os.replace(stamp + ".partial", stamp)
  return builder
