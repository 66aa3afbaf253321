"""`vdm eval control`: does the model follow the requested object path, camera and prompt
timeline? Every request comes from a held-out clip of the scenes data (test split: colour x
shape x motion compositions never trained on), whose recorded ground truth is what was asked.

Trajectory and camera parts run for a model with those inputs (configs/control.py); the
timeline part for any model (meaningful for one trained with Diffusion Forcing), on held-out
captions of its own data kind (scenes, or the spine's simple clips).

  trajectory  the clip's caption alone, then with the object's recorded path: the detected
              centre's distance from the path (px per frame; digits are skipped: their ink's
              centroid is not their centre)
  camera      the caption without its camera clause, alone (the unconditioned baseline), then
              with the recorded camera path, on clips over a photo (a flat or gradient
              background shows no motion to measure): the estimated global motion's endpoint
              distance from the requested one (px per frame step). The clause goes from both:
              kept, the text alone names the move and the path adds nothing to measure
  timeline    "0s: caption; T s: the caption with the object's colour changed", autoregressive at
              twice the training length, switched at the training length, under each switch
              policy (keep, recache, cut): frames until the new colour holds for good (lag),
              the object present through a non-cut switch, the change spike at the switch and
              the steps a cut takes (`vdm.eval.metrics.control`)
"""
from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from vdm.control.camera import step_transforms
from vdm.control.timeline import SWITCHES, load_timeline, schedule
from vdm.data import scene_examples, scenes
from vdm.data.captions import without_camera
from vdm.eval.metrics import control as metrics
from vdm.eval.run import write_report
from vdm.generate.modes import MODES, chunk_bounds


def held_out_clips(data, num: int, *, skip_digits: bool, background: str | None = None,
                   seed: int = 0, limit: int = 10_000):
  """Up to `num` test-split examples of the data config's size (one object slot used)."""
  out = []
  for i in range(limit):
    example = scene_examples.make_example(data.seed + seed, "test", i, data.height, data.width,
                                          data.frames, max_objects=data.max_objects)
    shape = scenes.SHAPES[int(example["shape"][0])]
    kind = scenes.BACKGROUNDS[int(example["background"])]
    if (skip_digits and shape == "digit") or (background and kind != background):
      continue
    out.append(example)
    if len(out) == num:
      break
  return out


def _recolor(caption: str, old: str, new: str) -> str | None:
  """The caption with the first 'a|an OLD ' (the first object's colour) made 'a|an NEW '."""
  from vdm.data.captions import article
  was, now = f"{article(old)} {old} ", f"{article(new)} {new} "
  i = caption.lower().find(was)
  return None if i < 0 else caption[:i] + now + caption[i + len(was):]


def recolored_caption(example) -> tuple[str, int] | None:
  """A scenes example's caption with its first object's colour word replaced by another colour
  that is neither its own nor a background colour: (caption, new colour index); None if its
  caption has no such word."""
  old = int(example["color"][0])
  taken = {old, int(example["bg_color_a"]), int(example["bg_color_b"])}
  new = next(c for c in range(len(scenes.COLORS)) if c not in taken)
  caption = _recolor(example["caption"], scenes.COLOR_NAMES[old], scenes.COLOR_NAMES[new])
  return None if caption is None else (caption, new)


def timeline_cases(data, num: int, *, seed: int = 0) -> list[dict]:
  """Up to `num` held-out colour switches of the model's data kind: dict(first, second (the
  caption with the object's colour changed), old, new (indices into `timeline_palette`))."""
  cases = []
  if data.kind == "scenes":
    for example in held_out_clips(data, num, skip_digits=False, seed=seed):
      recolored = recolored_caption(example)
      if recolored is not None:
        cases.append(dict(first=example["caption"], second=recolored[0],
                          old=int(example["color"][0]), new=recolored[1]))
    return cases
  from vdm.data import simple  # the spine's clips: one object, a flat background
  for _, example in simple.generate_examples(data.seed + seed, "test", num, data.height,
                                             data.width, data.frames):
    old, bg = int(example["color"]), int(example["background"])
    new = next(c for c in range(len(simple.COLORS)) if c not in (old, bg))
    cases.append(dict(first=example["caption"], old=old, new=new,
                      second=simple.switched_caption(example["caption"], old, new)))
  return cases


def timeline_palette(data):
  """The colours a timeline's frames are read in: the world's own (`metrics.frame_colors`)."""
  from vdm.data import simple
  return simple.PALETTE if data.kind == "simple" else scenes.PALETTE


def _mean(values) -> float:
  values = [v for v in values if v is not None and np.isfinite(v)]
  return float(np.mean(values)) if values else float("nan")


def score_paths(pipe, clips, *, seed: int, steps: int | None,
                guidance: float | None = None) -> dict:
  """Trajectory errors, text alone vs with the recorded path. Returns dict(rows, text,
  trajectory) with the mean px error of each (and per-frame means)."""
  rows = []
  for i, example in enumerate(tqdm(clips, desc="control: trajectory")):
    truth = example["center"][:, 0]
    color = int(example["color"][0])
    row = dict(caption=example["caption"])
    for name, options in (("text", {}), ("trajectory", dict(trajectory=truth[None]))):
      frames = pipe(example["caption"], seed=seed + i, steps=steps, guidance=guidance,
                    **_clip_options(pipe), **options)
      err = metrics.trajectory_error(metrics.object_centers(frames, color), truth)
      row[name] = dict(mean=err["mean"], found=err["found"], per_frame=err["per_frame"].tolist())
    rows.append(row)
  summary = {name: dict(mean_px=_mean(r[name]["mean"] for r in rows),
                        found=_mean(r[name]["found"] for r in rows),
                        per_frame_px=np.nanmean([r[name]["per_frame"] for r in rows], 0).tolist())
             for name in ("text", "trajectory")}
  return dict(rows=rows, **summary)


def score_cameras(pipe, clips, *, seed: int, steps: int | None,
                  guidance: float | None = None) -> dict:
  """Camera errors, the caption without its camera clause alone vs with the recorded path."""
  rows = []
  h, w = pipe.config.data.height, pipe.config.data.width
  for i, example in enumerate(tqdm(clips, desc="control: camera")):
    requested = step_transforms(example["camera"])
    caption = without_camera(example["caption"])
    row = dict(caption=caption, camera=scenes.CAMERAS[int(example["camera_kind"])])
    for name, options in (("text", {}), ("camera", dict(camera=example["camera"]))):
      frames = pipe(caption, seed=seed + i, steps=steps, guidance=guidance, **_clip_options(pipe),
                    **options)
      objects = metrics.color_masks(frames, int(example["color"][0]))
      err = metrics.camera_error(metrics.estimate_camera(frames, ignore=objects), requested, h, w)
      row[name] = dict(mean=err["mean"], per_step=err["per_step"].tolist())
    rows.append(row)
  return dict(rows=rows, **{name: dict(mean_px=_mean(r[name]["mean"] for r in rows))
                            for name in ("text", "camera")})


def score_timelines(pipe, cases, *, seed: int, steps: int | None, chunk: int = 1,
                    guidance: float | None = None) -> dict:
  """Colour-switch timelines (`timeline_cases`) at twice the training length, switched at the
  training length, under each switch policy."""
  d = pipe.config.data
  td = pipe.vae.temporal_downsample
  frames = 2 * (d.frames - 1) + 1
  seconds, switch_time = frames / d.fps, (d.frames - 1) / d.fps
  latent = pipe.vae.latent_frames(frames)
  chunk_frames = chunk * td
  rows = []
  for i, case in enumerate(tqdm(cases, desc="control: timeline")):
    text = f"0s: {case['first']}; {switch_time:g}s: {case['second']}"
    plan = schedule(load_timeline(text), chunk_bounds(latent, chunk), fps=d.fps,
                    temporal_downsample=td, seconds=seconds)
    switch_frame = plan.start_frame[plan.switch.index("keep")]
    row = dict(prompts=[case["first"], case["second"]], switch_frame=switch_frame)
    for policy in SWITCHES:
      video = pipe(prompts=text, switch=policy, mode="autoregressive", chunk=chunk,
                   seconds=seconds, fps=d.fps, resolution=min(d.height, d.width), seed=seed + i,
                   steps=steps, guidance=guidance)
      colors = metrics.frame_colors(video, timeline_palette(d))
      lag = metrics.adherence_lag(colors == case["new"], switch_frame, present=colors >= 0)
      around = colors[max(0, switch_frame - 2):switch_frame + 2 * chunk_frames]
      row[policy] = dict(
          lag_frames=lag, lag_chunks=None if lag is None else math.ceil(lag / chunk_frames),
          within_2_chunks=lag is not None and lag <= 2 * chunk_frames,
          first_prompt_followed=float(np.mean(colors[:switch_frame] == case["old"])),
          object_kept=bool(np.all(around >= 0)),
          spike=metrics.switch_spike(video, switch_frame),
          cut_steps=metrics.cut_steps(video, switch_frame))
    rows.append(row)
  summary = {}
  for policy in SWITCHES:
    r = [row[policy] for row in rows]
    summary[policy] = dict(
        within_2_chunks=_mean(x["within_2_chunks"] for x in r),
        lag_chunks=_mean(x["lag_chunks"] for x in r),
        never=_mean(x["lag_frames"] is None for x in r),
        first_prompt_followed=_mean(x["first_prompt_followed"] for x in r),
        object_kept=_mean(x["object_kept"] for x in r), spike=_mean(x["spike"] for x in r),
        cut_steps=_mean(x["cut_steps"] for x in r))
  return dict(rows=rows, frames=frames, switch_seconds=switch_time, chunk=chunk, **summary)


def _clip_options(pipe) -> dict:
  d = pipe.config.data
  return dict(seconds=d.frames / d.fps, fps=d.fps, resolution=min(d.height, d.width))


def run_control(checkpoint: str, *, num: int = 16, seed: int = 0, steps: int | None = None,
                guidance: float | None = None, out: str = "") -> dict:
  """The control suite on `num` held-out clips per part; writes JSON and a markdown table.
  guidance: the CFG scale of every sample (None: the model's sample.guidance)."""
  from vdm.generate.pipeline import Pipeline
  from vdm.provenance import git_commit
  if num < 1:
    raise ValueError(f"--num {num} must be >= 1")
  pipe = Pipeline.load(checkpoint)
  c, d = pipe.config.control, pipe.config.data
  if d.kind not in ("scenes", "simple"):
    raise ValueError(f"--checkpoint {checkpoint!r}: the control suite draws held-out clips of "
                     f"data.kind 'scenes' (paths, cameras, timelines) or 'simple' (timelines); "
                     f"this model was trained on {d.kind!r}")
  report = dict(checkpoint=checkpoint, num=num, seed=seed,
                steps=steps or pipe.config.sample.steps,
                guidance=pipe.config.sample.guidance if guidance is None else guidance,
                git_commit=git_commit())
  lines = ["| part | condition | metric | value |", "|---|---|---|---|"]
  if c.trajectory:
    paths = score_paths(pipe, held_out_clips(d, num, skip_digits=True), seed=seed, steps=steps,
                        guidance=guidance)
    report["trajectory"] = paths
    for name in ("text", "trajectory"):
      lines.append(f"| trajectory | {name} | centre error (px) | {paths[name]['mean_px']:.2f} |")
      lines.append(f"| trajectory | {name} | object found | {paths[name]['found']:.2f} |")
  if c.camera:
    cams = score_cameras(pipe, held_out_clips(d, num, skip_digits=False, background="texture"),
                         seed=seed, steps=steps, guidance=guidance)
    report["camera"] = cams
    for name in ("text", "camera"):
      lines.append(f"| camera | {name} | motion error (px / step) | {cams[name]['mean_px']:.2f} |")
  if MODES["autoregressive"].timeline:  # any model runs it; one trained for it runs it well
    tl = score_timelines(pipe, timeline_cases(d, num), seed=seed, steps=steps,
                         guidance=guidance)
    report["timeline"] = tl
    for policy in SWITCHES:
      s = tl[policy]
      lines.append(f"| timeline | {policy} | adherence within 2 chunks | "
                   f"{s['within_2_chunks']:.2f} |")
      lines.append(f"| timeline | {policy} | lag (chunks, when reached) | {s['lag_chunks']:.2f} |")
      lines.append(f"| timeline | {policy} | object kept through the switch | "
                   f"{s['object_kept']:.2f} |")
      lines.append(f"| timeline | {policy} | change spike at the switch | {s['spike']:.2f} |")
      lines.append(f"| timeline | {policy} | steps of the switch (1: a clean cut) | "
                   f"{s['cut_steps']:.2f} |")
  return write_report(out, report, "\n".join(lines) + "\n")
