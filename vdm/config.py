"""Loading, overriding and validating experiment configs.

A config is `configs/<name>.py[:arg]`: the module's `get_config(arg)` builds an ml_collections
ConfigDict. Every field is validated once, here, with an error that names the field, the value and
what is allowed.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os

import ml_collections

ASPECTS = {"1:1": (1, 1), "16:9": (16, 9), "9:16": (9, 16)}
from vdm.diffusion.samplers import SAMPLERS
from vdm.generate.modes import MODES
from vdm.text.tokenizer import MODEL_TYPES
from vdm.train.faults import NAN_POLICIES
from vdm.vae.model import TEMPORAL_DOWNSAMPLES
TIMESTEP_SAMPLING = ("uniform", "logit_normal")


class ConfigError(ValueError):
  """An invalid config value; the message names the field."""


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Builds the config named by 'path/to/config.py[:arg]' and applies 'a.b=value' overrides."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"--config: no such file {path!r} (expected configs/<name>.py[:arg])")
  module_spec = importlib.util.spec_from_file_location("vdm_user_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  for item in overrides:
    apply_override(config, item)
  validate(config)
  return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Sets one 'dotted.field=value' (value parsed as a Python literal, else kept as a string)."""
  key, sep, raw = item.partition("=")
  if not sep:
    raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. train.dit.steps=100")
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    if name not in node:
      raise ConfigError(f"--set {key}: unknown field {name!r}")
    node = node[name]
  if leaf not in node:
    raise ConfigError(f"--set {key}: unknown field; known: {sorted(node.keys())}")
  try:
    node[leaf] = value
  except TypeError as e:
    raise ConfigError(f"--set {key}={raw}: {e}") from None


def config_from_json(text: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads(text))


def _require(ok: bool, field: str, value, allowed: str) -> None:
  if not ok:
    raise ConfigError(f"config field {field}={value!r} is invalid: allowed {allowed}")


def _is_int(value) -> bool:
  # bool is an int subclass: `--set dit.depth=True` must not pass as depth 1.
  return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(config, field: str) -> None:
  value = _get(config, field)
  _require(_is_int(value) and value >= 1, field, value, "an integer >= 1")


def _in_range(config, field: str, low: float, high: float) -> None:
  value = _get(config, field)
  _require(isinstance(value, (int, float)) and not isinstance(value, bool)
           and low <= value <= high, field, value, f"a number in [{low}, {high}]")


def _get(config, field: str):
  node = config
  for name in field.split("."):
    node = node[name]
  return node


def spatial_stride(config) -> int:
  """Pixels per latent-token side: the VAE's spatial downsampling times the DiT patch."""
  return 2 ** (len(config.vae.channel_mult) - 1) * config.dit.patch


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field a run depends on; raises ConfigError naming the first bad one."""
  task = config.get("task", "t2v")
  _require(task in ("t2v", "sr"), "task", task, "'t2v' (text to video) or 'sr' (upscaler)")
  if task == "sr":
    return _validate_sr(config)
  for field in ("data.height", "data.width", "data.frames", "data.fps", "data.num_train",
                "data.num_test", "text.vocab_size", "text.max_length", "text.width", "text.depth",
                "text.heads", "text.mlp", "vae.base_channels", "vae.latent_channels",
                "vae.num_res_blocks", "dit.width", "dit.depth", "dit.heads", "dit.patch",
                "sample.steps", "sample.max_frames", "sample.resolution", "sample.fps"):
    _positive_int(config, field)
  _require(len(config.vae.channel_mult) >= 1, "vae.channel_mult", config.vae.channel_mult,
           "a non-empty tuple")
  # Each temporal x2 is folded into one of the len(channel_mult) - 1 spatial steps.
  max_td = 2 ** (len(config.vae.channel_mult) - 1)
  allowed_td = tuple(t for t in TEMPORAL_DOWNSAMPLES if t <= max_td)
  _require(config.vae.temporal_downsample in allowed_td, "vae.temporal_downsample",
           config.vae.temporal_downsample,
           f"one of {allowed_td} (at most 2 ** (len(vae.channel_mult) - 1) = {max_td})")
  stride = spatial_stride(config)
  for field in ("data.height", "data.width", "sample.resolution"):
    value = _get(config, field)
    _require(value % stride == 0, field, value,
             f"a multiple of {stride} (VAE downsampling x dit.patch)")
  frames = config.data.frames
  _require((frames - 1) % config.vae.temporal_downsample == 0, "data.frames", frames,
           f"1 + a multiple of vae.temporal_downsample={config.vae.temporal_downsample}")
  _require(config.dit.width % config.dit.heads == 0, "dit.heads", config.dit.heads,
           f"a divisor of dit.width={config.dit.width}")
  _require(config.text.width % config.text.heads == 0, "text.heads", config.text.heads,
           f"a divisor of text.width={config.text.width}")
  _require(config.dit.get("remat", "none") in ("none", "full", "dots"), "dit.remat",
           config.dit.get("remat"), "one of ('none', 'full', 'dots')")
  _require(isinstance(config.text.get("freeze", False), bool), "text.freeze",
           config.text.get("freeze"), "True or False")
  _require(isinstance(config.dit.get("qk_norm", False), bool), "dit.qk_norm",
           config.dit.get("qk_norm"), "True or False")
  _require(config.dit.get("attention", "factorized") in ("factorized", "full"),
           "dit.attention", config.dit.get("attention"), "'factorized' or 'full'")
  position = config.dit.get("position", "sincos")
  _require(position in ("sincos", "rope3d"), "dit.position", position, "'sincos' or 'rope3d'")
  head_dim = config.dit.width // config.dit.heads
  _require(position != "rope3d" or (head_dim % 2 == 0 and head_dim >= 6), "dit.position",
           position, f"'sincos' for a head dimension dit.width / dit.heads = {head_dim} (rope3d "
           "splits it into rotation pairs for frame, row and column: it must be even and >= 6)")
  _require(isinstance(config.dit.get("scan_layers", False), bool), "dit.scan_layers",
           config.dit.get("scan_layers"), "True or False")
  temporal_patch = config.dit.get("temporal_patch", 1)
  _require(_is_int(temporal_patch) and 1 <= temporal_patch <= 16, "dit.temporal_patch",
           temporal_patch, "an integer in [1, 16]")
  if temporal_patch > 1:  # grouped frames: no chunked (KV-cached, block-causal) generation yet
    _require(config.sample.mode in ("parallel", "image_to_video"), "sample.mode",
             config.sample.mode, f"'parallel' or 'image_to_video' with dit.temporal_patch="
             f"{temporal_patch} (autoregressive and rolling modes need dit.temporal_patch=1)")
    causal_prob = config.diffusion.get("causal_prob", 0.0)
    _require(causal_prob == 0.0, "diffusion.causal_prob", causal_prob,
             f"0 with dit.temporal_patch={temporal_patch} (block-causal training needs "
             "dit.temporal_patch=1)")
  _require(config.dit.get("matmul_dtype", "float32") in ("float32", "bfloat16"),
           "dit.matmul_dtype", config.dit.get("matmul_dtype"), "'float32' or 'bfloat16'")
  _require(isinstance(config.dit.get("fast_grads", True), bool), "dit.fast_grads",
           config.dit.get("fast_grads"), "True or False")
  _require(config.text.tokenizer in MODEL_TYPES, "text.tokenizer", config.text.tokenizer,
           f"one of {MODEL_TYPES}")
  _require(config.diffusion.timestep_sampling in TIMESTEP_SAMPLING,
           "diffusion.timestep_sampling", config.diffusion.timestep_sampling,
           f"one of {TIMESTEP_SAMPLING}")
  _in_range(config, "diffusion.text_dropout", 0.0, 0.99)
  _in_range(config, "diffusion.per_frame_levels_prob", 0.0, 1.0)
  _validate_level_schemes(config)
  _in_range(config, "sample.guidance", 0.0, 100.0)
  _in_range(config, "sample.shift", 0.01, 100.0)
  _in_range(config, "sample.seconds", 1e-6, 1e6)
  _require(config.sample.mode in MODES, "sample.mode", config.sample.mode, f"one of {MODES}")
  _require(config.sample.sampler in SAMPLERS, "sample.sampler", config.sample.sampler,
           f"one of {SAMPLERS}")
  _positive_int(config, "sample.chunk")
  _require(isinstance(config.sample.context_noise, (int, float))
           and 0 <= config.sample.context_noise < 1, "sample.context_noise",
           config.sample.context_noise, "a number in [0, 1)")
  _require(config.sample.aspect in ASPECTS, "sample.aspect", config.sample.aspect,
           f"one of {tuple(ASPECTS)}")
  for stage in ("vae", "dit"):
    for field in ("steps", "batch_size", "warmup_steps", "log_every", "checkpoint_every"):
      full = f"train.{stage}.{field}"
      value = _get(config, full)
      _require(_is_int(value) and value >= (0 if field == "warmup_steps" else 1),
               full, value, "an integer >= 1" if field != "warmup_steps" else "an integer >= 0")
    if stage == "vae" and "crop_frames" in config.train.vae:
      crop, td = config.train.vae.crop_frames, config.vae.temporal_downsample
      _require(_is_int(crop) and (crop == 0 or (1 <= crop <= config.data.frames
                                                and (crop - 1) % td == 0)),
               "train.vae.crop_frames", crop,
               f"0 (whole clips) or 1 + a multiple of vae.temporal_downsample={td}, at most "
               f"data.frames={config.data.frames}")
    _in_range(config, f"train.{stage}.learning_rate", 1e-8, 1.0)
    _in_range(config, f"train.{stage}.ema_decay", 0.0, 1.0)
    _in_range(config, f"train.{stage}.grad_clip", 1e-6, 1e6)
    _in_range(config, f"train.{stage}.weight_decay", 0.0, 1.0)
    stage_cfg = config.train[stage]
    if "nan_policy" in stage_cfg:  # configs written before the NaN policy existed lack it
      _require(stage_cfg.nan_policy in NAN_POLICIES, f"train.{stage}.nan_policy",
               stage_cfg.nan_policy, f"one of {NAN_POLICIES}")
    if "max_nan_skips" in stage_cfg:
      _require(_is_int(stage_cfg.max_nan_skips) and stage_cfg.max_nan_skips >= 0,
               f"train.{stage}.max_nan_skips", stage_cfg.max_nan_skips, "an integer >= 0")
  _validate_more(config)
  _validate_text_pretrain(config)


def _validate_text_pretrain(config: ml_collections.ConfigDict) -> None:
  """The text stage and text.init_from (configs written before them lack them: nothing to do)."""
  init_from = config.text.get("init_from", "")
  _require(isinstance(init_from, str), "text.init_from", init_from,
           "a path string ('' for a randomly initialised encoder)")
  _require(init_from == "" or os.path.exists(init_from), "text.init_from", init_from,
           "'' or an existing encoder directory (from `vdm train --until text`) or T5 .npz")
  if "text" not in config.get("train", {}):
    return
  stage = config.train.text
  _require(_is_int(stage.steps) and stage.steps >= 0, "train.text.steps", stage.steps,
           "an integer >= 0 (0: no text pretraining)")
  if stage.steps == 0:
    return
  _require(init_from == "", "text.init_from", init_from,
           "'' while train.text.steps > 0 (the text stage provides the initial encoder)")
  for field in ("batch_size", "log_every", "checkpoint_every"):
    _positive_int(config, f"train.text.{field}")
  _require(_is_int(stage.warmup_steps) and stage.warmup_steps >= 0, "train.text.warmup_steps",
           stage.warmup_steps, "an integer >= 0")
  _in_range(config, "train.text.learning_rate", 1e-8, 1.0)
  _in_range(config, "train.text.ema_decay", 0.0, 1.0)
  _in_range(config, "train.text.grad_clip", 1e-6, 1e6)
  _in_range(config, "train.text.weight_decay", 0.0, 1.0)
  _require(stage.get("nan_policy", "skip") in NAN_POLICIES, "train.text.nan_policy",
           stage.get("nan_policy"), f"one of {NAN_POLICIES}")
  p = config.text_pretrain
  _in_range(config, "text_pretrain.noise_density", 0.01, 0.99)
  _in_range(config, "text_pretrain.mean_span_length", 1.0, 64.0)
  _positive_int(config, "text_pretrain.decoder_depth")
  _require(isinstance(p.tie_head, bool), "text_pretrain.tie_head", p.tie_head, "True or False")
  from vdm.text.span_corruption import max_noise_spans  # jax; kept local like the others
  needed = max_noise_spans(config.text.max_length, p.noise_density, p.mean_span_length)
  _require(_is_int(p.num_sentinels) and needed <= p.num_sentinels <= 1000,
           "text_pretrain.num_sentinels", p.num_sentinels,
           f"an integer in [{needed}, 1000] ({needed}: the most spans a row of "
           f"text.max_length={config.text.max_length} ids gets at this density and span length)")


def _validate_sr(config: ml_collections.ConfigDict) -> None:
  """The upscaler's config (configs/sr.py)."""
  _require(config.factor in (2, 4), "factor", config.factor, "2 or 4")
  for field in ("model.width", "model.blocks", "data.short_side", "data.frames",
                "train.steps", "train.batch_size", "train.log_every", "train.checkpoint_every"):
    _positive_int(config, field)
  _require(_is_int(config.model.neighbours) and config.model.neighbours >= 0,
           "model.neighbours", config.model.neighbours, "an integer >= 0")
  _require(config.data.short_side % (2 * config.factor) == 0, "data.short_side",
           config.data.short_side, f"a multiple of {2 * config.factor} (2 x factor)")
  _in_range(config, "train.learning_rate", 1e-8, 1.0)
  _in_range(config, "train.ema_decay", 0.0, 1.0)
  if "loss" in config:
    _in_range(config, "loss.temporal_weight", 0.0, 100.0)
    if "input_noise" in config.loss:
      _in_range(config, "loss.input_noise", 0.0, 25.0)


def _validate_level_schemes(config: ml_collections.ConfigDict) -> None:
  """Teacher forcing, causal training masks and frame offsets (configs before them lack them)."""
  from vdm.generate.modes import allowed_chunks  # numpy only; kept local to avoid a cycle
  d = config.diffusion
  causal_prob = d.get("causal_prob", 0.0)
  if "causal_prob" in d:
    _in_range(config, "diffusion.causal_prob", 0.0, 1.0)
  latent_frames = 1 + (config.data.frames - 1) // config.vae.temporal_downsample
  chunks = tuple(d.get("causal_chunks", (1,)))
  allowed = allowed_chunks(latent_frames)
  _require(len(chunks) >= 1 and all(_is_int(k) and k in allowed for k in chunks),
           "diffusion.causal_chunks", chunks,
           f"a non-empty tuple of chunk sizes from {allowed} (the {latent_frames} latent frames "
           "of a training clip)")
  teacher = d.get("teacher_forcing", False)
  _require(isinstance(teacher, bool), "diffusion.teacher_forcing", teacher, "True or False")
  _require(not teacher or causal_prob == 1.0, "diffusion.teacher_forcing", teacher,
           "False unless diffusion.causal_prob = 1 (a teacher-forced chunk must not see the "
           "noisy chunks after it)")
  _require(not teacher or d.per_frame_levels_prob == 0.0, "diffusion.teacher_forcing", teacher,
           "False unless diffusion.per_frame_levels_prob = 0 (two level schemes at once)")
  if "temporal_consistency_weight" in d:
    _in_range(config, "diffusion.temporal_consistency_weight", 0.0, 100.0)
  if "motion_supervision_weight" in d:
    _in_range(config, "diffusion.motion_supervision_weight", 0.0, 100.0)
    kind = config.data.get("kind", "simple")
    _require(not d.motion_supervision_weight or kind == "simple",
             "diffusion.motion_supervision_weight", d.motion_supervision_weight,
             f"0 with data.kind={kind!r} (the exact latent flow is built for the 'simple' data)")
  window = config.dit.get("temporal_window", 0)
  _require(_is_int(window) and window >= 0, "dit.temporal_window", window,
           "an integer >= 0 (0: attend all frames)")
  offset = d.get("max_frame_offset", 0)
  _require(_is_int(offset) and 0 <= offset <= 10_000, "diffusion.max_frame_offset", offset,
           "an integer in [0, 10000]")
  given_prob = d.get("given_prob", 0.0)
  if "given_prob" in d:
    _in_range(config, "diffusion.given_prob", 0.0, 1.0)
  given = d.get("given_frames", 0)
  _require(_is_int(given) and 0 <= given < latent_frames, "diffusion.given_frames", given,
           f"an integer in [0, {latent_frames - 1}] (latent frames pinned clean in extension "
           f"training; a training clip has {latent_frames})")
  _require(given_prob == 0 or given >= 1, "diffusion.given_prob", given_prob,
           "0 unless diffusion.given_frames >= 1 (no frames to give)")
  _require(given_prob == 0 or not teacher, "diffusion.given_prob", given_prob,
           "0 with diffusion.teacher_forcing=True (two level schemes at once)")
  _require(given_prob == 0 or config.dit.get("temporal_patch", 1) == 1, "diffusion.given_prob",
           given_prob, "0 unless dit.temporal_patch=1 (given frames are whole token frames)")
  _validate_prediction(config, latent_frames)


def _validate_prediction(config: ml_collections.ConfigDict, latent_frames: int) -> None:
  """The video-prediction task (`config.prediction`, configs/moving_mnist.py): its given frames
  must be whole latent frames, and extension training must pin exactly those."""
  if "prediction" not in config:
    return
  given, frames = config.prediction.given_frames, config.data.frames
  td = config.vae.temporal_downsample
  _require(_is_int(given) and 1 <= given < frames, "prediction.given_frames", given,
           f"an integer in [1, {frames - 1}] (data.frames={frames}: given + predicted)")
  # With (frames - 1) % td == 0 as well, the predicted frames are then whole latent frames too.
  _require((given - 1) % td == 0, "prediction.given_frames", given,
           f"1 + a multiple of vae.temporal_downsample={td}, so that the given frames are "
           "exactly the first latent frames")
  d = config.diffusion
  latents = 1 + (given - 1) // td
  _require(d.get("given_prob", 0.0) == 0 or d.get("given_frames", 0) == latents,
           "diffusion.given_frames", d.get("given_frames", 0),
           f"{latents}: the latent frames of prediction.given_frames={given} "
           f"(of {latent_frames})")


def _validate_more(config: ml_collections.ConfigDict) -> None:
  """Seeds, types and the cross-field constraints a default sampling request depends on."""
  for field in ("seed", "data.seed"):
    value = _get(config, field)
    _require(_is_int(value) and value >= 0, field, value, "an integer >= 0")
  _require(isinstance(config.data.data_dir, str), "data.data_dir", config.data.data_dir,
           "a directory path string ('' for <workdir>/data)")
  # One piece of text plus the end-of-sequence token.
  _require(config.text.max_length >= 2, "text.max_length", config.text.max_length,
           "an integer >= 2")
  mult = config.vae.channel_mult
  _require(all(_is_int(m) and m >= 1 for m in mult), "vae.channel_mult", mult,
           "a tuple of integers >= 1")
  _in_range(config, "vae.kl_weight", 0.0, 1e6)
  _require(config.vae.get("norm", "group") in ("group", "rms"), "vae.norm",
           config.vae.get("norm"), "'group' or 'rms'")
  if "disc_weight" in config.vae:  # configs written before the discriminator lack these
    _in_range(config, "vae.disc_weight", 0.0, 100.0)
    start = config.vae.get("disc_start", 0)
    _require(_is_int(start) and start >= 0, "vae.disc_start", start, "an integer >= 0 (a step)")
    _positive_int(config, "vae.disc_channels")
  _in_range(config, "dit.mlp_ratio", 0.01, 64.0)
  s, td = config.sample, config.vae.temporal_downsample
  _require((s.max_frames - 1) % td == 0, "sample.max_frames", s.max_frames,
           f"1 + a multiple of vae.temporal_downsample={td}")
  # The defaults must make a valid request on their own: `vdm sample` with no options uses them.
  frames = 1 + td * max(0, round((s.seconds * s.fps - 1) / td))
  _require(frames <= s.max_frames, "sample.seconds", s.seconds,
           f"at most {s.max_frames / s.fps:.3g} (sample.max_frames={s.max_frames} at "
           f"sample.fps={s.fps})")
  latent_frames = (frames - 1) // td + 1
  from vdm.generate.modes import allowed_chunks  # numpy only; kept local to avoid a cycle
  allowed = allowed_chunks(latent_frames)
  _require(s.chunk in allowed, "sample.chunk", s.chunk,
           f"a chunk size for the {latent_frames} latent frames of the default clip: {allowed}")
  if "window" in s:
    _require(_is_int(s.window) and s.window >= 0, "sample.window", s.window,
             "an integer >= 0 (0: a training clip's latent frames minus the chunk)")
