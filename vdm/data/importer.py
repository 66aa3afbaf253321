"""`vdm data import DIR --out NAME`: a folder of the user's videos -> a TFDS dataset.

Each video file (mp4, webm, avi, mov, mkv, m4v, gif) is decoded with ffmpeg (the binary that
imageio-ffmpeg ships, through mediapy), resampled to `fps`, put in the nearest aspect bucket
(1:1, 16:9, 9:16) at `short_side`, resized to cover it and centre-cropped, and cut to the longest
duration bucket (`lengths`) it fills; its caption is the sidecar `<name>.txt` beside it, or the
file name. Byte-identical files are imported once.

Robust by construction: a file that cannot be read, is empty, truncated, too short, a duplicate
or not a video is skipped and listed with its reason in the report; nothing raises. Each clip
is staged under `<data_dir>/<name>_staging/` (written atomically, recorded in a manifest after
every file), so an interrupted import loses nothing: a rerun skips what is staged and then
(re)builds the TFDS dataset from the staging folder. Each bucket becomes one split named
`<height>x<width>_t<frames>`, so every split has static shapes.
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
# A decode that yields fewer frames than the container declares (times this) is truncated.
_TRUNCATED_BELOW = 0.9


@dataclasses.dataclass(frozen=True)
class ImportOptions:
  short_side: int = 64
  fps: int = 8
  lengths: tuple[int, ...] = (16, 32)
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


def declared_seconds(path: str) -> float | None:
  """The duration the container header declares (ffmpeg's 'Duration:'), None if it has none."""
  import re
  import subprocess
  import imageio_ffmpeg
  proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                        capture_output=True, text=True, errors="replace", timeout=60)
  match = re.search(r"Duration: (\d+):(\d+):([\d.]+)", proc.stderr)
  if not match:
    return None
  h, m, sec = match.groups()
  return 3600 * int(h) + 60 * int(m) + float(sec)


class SkipFile(Exception):
  """A file that cannot be imported; the message is the reason shown in the report."""


def decode_clip(path: str, options: ImportOptions) -> tuple[np.ndarray, dict]:
  """Decodes one file into its bucket: (uint8 [T, H, W, 3], info). Raises SkipFile."""
  import mediapy
  if os.path.getsize(path) == 0:
    raise SkipFile("empty file (0 bytes)")
  try:
    with mediapy.VideoReader(path) as reader:
      src_fps = float(reader.fps or 0)
      h, w = reader.shape
      if h < 2 or w < 2 or src_fps <= 0:
        raise SkipFile(f"no usable video stream ({w}x{h} at {src_fps} fps)")
      aspect = nearest_aspect(h, w, options.aspects)
      height, width = aspect_size(aspect, options.short_side)
      longest = max(options.lengths)
      # Source frame index shown at each output time k / fps.
      wanted = np.floor(np.arange(longest) * src_fps / options.fps + 1e-6).astype(np.int64)
      frames, count = [], 0
      for i, frame in enumerate(reader):
        count += 1
        while len(frames) < longest and wanted[len(frames)] == i:
          frames.append(resize_cover_crop(np.asarray(frame), height, width))
  except SkipFile:
    raise
  except Exception as e:  # ffmpeg's own message says what is wrong with the file.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    # Demuxer/decoder lines ('[mov,mp4,... @ 0x..] moov atom not found') name the actual fault;
    # ffmpeg's closing 'Error opening input' lines are generic.
    specific = [l.split("] ", 1)[1] for l in lines if " @ 0x" in l and "] " in l]
    generic = [l for l in lines if "rror" in l or "invalid" in l.lower()]
    detail = "; ".join(dict.fromkeys(specific)) or (generic or lines or [type(e).__name__])[-1]
    raise SkipFile(f"cannot decode: {detail[:200]}") from None
  if count == 0:
    raise SkipFile("cannot decode: no frames")
  # mediapy's num_images counts what decodes; the header's duration says what should.
  seconds = declared_seconds(path)
  expected = int(round(seconds * src_fps)) if seconds else 0
  if expected and count < _TRUNCATED_BELOW * expected:
    raise SkipFile(f"truncated: decoded {count} of the {expected} frames its header declares")
  fits = [L for L in options.lengths if L <= len(frames)]
  if not fits:
    raise SkipFile(f"too short: {count} frames at {src_fps:g} fps give {len(frames)} at "
                   f"{options.fps} fps, the shortest bucket is {min(options.lengths)}")
  length = max(fits)
  return np.stack(frames[:length]), dict(aspect=aspect, source_fps=src_fps, source_frames=count,
                                         source_size=[int(h), int(w)])


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


def import_folder(src_dir: str, name: str, data_dir: str,
                  options: ImportOptions = ImportOptions(), log=print) -> dict:
  """Imports every video under src_dir into dataset `name` under data_dir; returns the report:
  {'imported': [{path, split, caption, ...}], 'skipped': [{path, reason}], 'splits': {split: n},
  'dataset_dir': str}. Also written to <staging>/report.json. Rerunning resumes.
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
    if rel in files and files[rel].get("key") == key:
      continue  # Staged (or judged) by an earlier run.
    entry = dict(key=key)
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
    log(f"{entry['status']:>8} {rel}" + (f": {entry['reason']}" if "reason" in entry else ""))
  # Files that disappeared since an earlier run are no longer part of the dataset.
  present = {os.path.relpath(p, src_dir) for p in _scan(src_dir)}
  for rel in [r for r in files if r not in present]:
    del files[rel]
  write_json(manifest_path, manifest)
  builder = _build(data_dir, name, manifest)
  report = dict(
      imported=[dict(path=r, split=e["split"], caption=e["caption"]) for r, e in
                sorted(files.items()) if e["status"] == "imported"],
      skipped=[dict(path=r, reason=e["reason"]) for r, e in sorted(files.items())
               if e["status"] == "skipped"],
      splits=({s: i.num_examples for s, i in builder.info.splits.items()} if builder else {}),
      dataset_dir=str(builder.data_path) if builder else None)
  write_json(os.path.join(stage, "report.json"), report)
  return report


@dataclasses.dataclass(eq=False)
class FolderVideosConfig(tfds.core.BuilderConfig):
  staging: str = ""


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

  def _generate_examples(self, entries):
    for rel, entry in entries:
      with np.load(os.path.join(self.builder_config.staging, entry["clip"])) as clip:
        video = clip["video"]
      yield rel, dict(video=video, caption=entry["caption"], source=rel)


def load_builder(data_dir: str, name: str) -> FolderVideos:
  """The FolderVideos builder of an imported dataset `name` (as written by import_folder)."""
  config = FolderVideosConfig(name=name, staging=staging_dir(data_dir, name))
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
