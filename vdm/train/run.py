"""`vdm train`: tokenizer -> [text encoder pretraining] -> VAE -> [audio VAE] -> denoiser ->
exported model directory, each stage resumable.

Every stage goes through the one loop in `vdm.train.loop`; a finished stage is not retrained (its
last checkpoint is restored), so rerunning `vdm train` on a workdir continues where it stopped.
`config.task` picks what is trained (`TASKS`): this text-to-video model, or the learned upscaler
of `vdm.train.upscaler`.

Every stage runs on the mesh of `config.parallel` (`placement_of`). In a multi-process run every
process runs this same program: each loads its own rows of each batch, only process 0 writes
single files (config, tokenizer, statistics, exports' JSON), and orbax writes the checkpoints
from all of them.
"""
from __future__ import annotations

import functools
import json
import os
import shutil

import jax
import numpy as np
import optax
from flax import nnx

from vdm.config import config_from_json
from vdm.config.t2v import audio_latents_per_frame, check_vae_init
from vdm.data import kinds
from vdm.data.loader import make_caption_loader, make_loader, make_source_loader
from vdm.audio.vae import audio_vae_loss, pcm_to_float
from vdm.dit.lora import is_lora
from vdm.models import (build_audio_vae, build_denoiser, build_vae, load_vae, read_latent_stats,
                        save_model_dir, without_lora, write_latent_stats)
from vdm.pytree import leaf_names
from vdm.nn import normalize_pixels
from vdm.parallel import distributed
from vdm.parallel.placement import Placement
from vdm.provenance import write_provenance
from vdm.text.pretrain import (build_pretrain_model, evaluate_span_corruption, export_encoder,
                               init_paths, init_text_encoder, span_corruption_loss)
from vdm.text.tokenizer import Tokenizer, train_tokenizer
from vdm.train.latent_cache import (LatentSource, build_latent_cache, build_text_cache,
                                    cache_statistics)
from vdm.train.loop import Critic, train
from vdm.train.batches import denoiser_batch_fn, held_out_captions, training_captions
from vdm.train.distill import run_distill_training
from vdm.train.objectives import denoiser_loss
from vdm.train.pretrained import load_pretrained, start_denoiser, start_vae
from vdm.train.upscaler import run_sr_training
from vdm.vae.discriminator import PatchDiscriminator, discriminator_loss
from vdm.vae.loss import vae_loss

STAGES = ("tokenizer", "text", "vae", "audio", "dit", "export")


def placement_of(config) -> Placement:
  """The run's mesh (`config.parallel`) with the rules of its attention layout."""
  layout = config.dit.attention if "dit" in config else "factorized"
  return Placement.from_config(config.parallel, layout)


def dataset_builder(config, workdir: str):
  """The prepared TFDS builder of config.data (any registered `data.kind`, vdm.data.kinds).

  In a multi-process run process 0 prepares it and the others open it once it is written."""
  data_dir = config.data.data_dir or os.path.join(workdir, "data")
  if distributed.is_lead():
    builder = kinds.build(config.data, data_dir)
  distributed.barrier("dataset")
  return builder if distributed.is_lead() else kinds.build(config.data, data_dir)


def check_workdir_config(config, workdir: str, *, record: bool = True) -> None:
  """A workdir belongs to one config: refuse to resume it with a different model or data.

  The stored config is upgraded first (`vdm.config.upgrade`), so a workdir written before a
  field existed compares at the value that reproduces it.
  record: also write the config into the workdir (`record_workdir_config`)."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        stored = f.read()
      old = json.loads(config_from_json(stored).to_json())
      as_stored = json.loads(stored)  # what the message shows: None for a field it lacks
    except ValueError as e:
      raise ValueError(f"workdir {workdir}: {path} is not valid JSON ({e}); it records the "
                       "config the checkpoints were trained with. Restore it or use a new "
                       "--workdir.") from None
    new = json.loads(config.to_json())
    differ = [f"{section}.{k}: {as_stored.get(section, {}).get(k)!r} -> {v!r}"
              for section in ("data", "text", "vae", "audio", "dit")
              for k, v in new[section].items()
              if old[section][k] != v]
    if differ:
      raise ValueError(f"workdir {workdir} was trained with a different config; fields that "
                       f"differ: {differ}. Use a new --workdir.")
  if record:
    record_workdir_config(config, workdir)


def record_workdir_config(config, workdir: str) -> None:
  """Writes the config a workdir is trained with to WORKDIR/config.json (process 0)."""
  if not distributed.is_lead():
    return
  path = os.path.join(workdir, "config.json")
  os.makedirs(workdir, exist_ok=True)
  # Write then rename: a kill mid-write must not leave a half file that blocks every resume.
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(path + ".tmp", path)


def frozen_parameters(config, denoiser) -> tuple[str, ...]:
  """Prefixes of the denoiser's parameter names the dit stage leaves as they are: with LoRA
  (dit.lora_rank > 0) every parameter but the LoRA matrices; else the text encoder when
  text.freeze; else none."""
  if config.dit.lora_rank:
    return tuple(n for n in leaf_names(nnx.state(denoiser, nnx.Param)) if not is_lora(n))
  return ("text",) if config.text.freeze else ()


def caption_builder(config, workdir: str):
  """The dataset the text-only stages (tokenizer, text pretraining) read captions from: None for
  a kind whose captions come from a grammar (the spine's; no clips are built for them), else the
  prepared `dataset_builder`."""
  from_grammar = kinds.DATA_KINDS[config.data.kind].caption_corpus is not None
  return None if from_grammar else dataset_builder(config, workdir)


def train_tokenizer_stage(config, workdir: str, builder=None,
                          pretrained: Tokenizer | None = None) -> Tokenizer:
  """The workdir's tokenizer, trained once on `training_captions`, or the one a pretrained
  encoder came with (`text.init_from`) or the pretrained model's (`init_from`, given as
  `pretrained`): the text encoder's rows are indexed by that tokenizer's ids."""
  path = os.path.join(workdir, "tokenizer.model")
  init_from = config.text.init_from
  given = init_paths(init_from)[1] if init_from else None
  proto = None
  if given is not None:
    with open(given, "rb") as f:
      proto = f.read()
  elif pretrained is not None:
    proto = pretrained.model_proto
  if proto is not None:
    if os.path.exists(path):
      with open(path, "rb") as f:
        if f.read() != proto:
          raise ValueError(f"workdir {workdir} has a tokenizer other than the one of "
                           f"{'init_from' if config.init_from else 'text.init_from'}="
                           f"{config.init_from or init_from!r}; use a new --workdir")
    elif distributed.is_lead():
      Tokenizer(proto).save(path)
  if not os.path.exists(path) and distributed.is_lead():
    Tokenizer(train_tokenizer(training_captions(config, builder),
                              vocab_size=config.text.vocab_size,
                              model_type=config.text.tokenizer)).save(path)
  distributed.barrier("tokenizer")  # written by process 0, read by all
  return Tokenizer.load(path)


def text_pretrain_stage(config, workdir: str, tokenizer: Tokenizer, builder=None,
                        placement: Placement | None = None) -> str:
  """T5 span-corruption pretraining of the text encoder through the one loop, on
  `training_captions`; exports WORKDIR/text_encoder and returns it ('' when train.text.steps
  is 0). A finished stage is restored, not retrained; the export is rewritten from it."""
  stage_cfg = config.train.text
  if stage_cfg.steps == 0:
    print("[text] train.text.steps = 0: no text-encoder pretraining "
          "(configs/text_pretrain.py turns it on)")
    return ""
  p = config.text_pretrain
  loss = functools.partial(span_corruption_loss, vocab_size=tokenizer.vocab_size,
                           num_sentinels=p.num_sentinels, noise_density=p.noise_density,
                           mean_span_length=p.mean_span_length)

  def prepare_batch(batch):
    ids, mask = tokenizer.encode(list(batch["caption"]), config.text.max_length)
    return dict(ids=ids, mask=mask)

  seed = config.seed + 2
  initial = build_pretrain_model(config, tokenizer.vocab_size, seed)
  held_out = held_out_captions(config, builder)
  evaluate = functools.partial(
      evaluate_span_corruption, tokenizer=tokenizer, captions=held_out,
      max_length=config.text.max_length, vocab_size=tokenizer.vocab_size,
      num_sentinels=p.num_sentinels, noise_density=p.noise_density,
      mean_span_length=p.mean_span_length)
  report = dict(num_captions=len(held_out), initial=evaluate(initial) if held_out else None)
  placement = placement or Placement.single_device()
  model = train(initial, loss,
                make_caption_loader(training_captions(config, builder),
                                    batch_size=stage_cfg.batch_size, seed=seed,
                                    rows=placement.process_rows(stage_cfg.batch_size)),
                stage_cfg, os.path.join(workdir, "text"), seed=seed,
                prepare_batch=prepare_batch, desc="text", placement=placement)
  model = distributed.local_copy(model)  # exported and evaluated whole, in every process
  directory = os.path.join(workdir, "text_encoder")
  if distributed.is_lead():
    export_encoder(directory, model.encoder, tokenizer, config)
  distributed.barrier("text_encoder")
  if held_out and distributed.is_lead():  # the exported (EMA) weights on unseen captions
    report["final"] = evaluate(model)
    with open(os.path.join(directory, "eval.json"), "w") as f:
      json.dump(report, f, indent=2)
    print(f"[text] held-out span corruption ({len(held_out)} captions): " + ", ".join(
        f"{k} {report['initial'][k]:.3f} -> {report['final'][k]:.3f}"
        for k in ("loss", "token_accuracy", "span_accuracy")))
  return directory


def latent_statistics(vae, loader, num_batches: int = 8, audio_vae=None) -> dict:
  """Per-channel mean and std of VAE latent means over a few training batches; with an audio
  VAE also those of its latents ('audio_mean', 'audio_std')."""
  encode = jax.jit(lambda video: vae.encode(normalize_pixels(video))[0])
  iterator = iter(loader)
  batches = [next(iterator) for _ in range(num_batches)]
  stats = {}
  streams = [("", encode, "video")]
  if audio_vae is not None:
    streams.append(("audio_", jax.jit(lambda pcm: audio_vae.encode_audio(pcm_to_float(pcm))[0]),
                    "audio"))
  for prefix, fn, key in streams:
    latents = np.concatenate([np.asarray(fn(batch[key])) for batch in batches])
    axes = tuple(range(latents.ndim - 1))
    stats.update({prefix + "mean": latents.mean(axes), prefix + "std": latents.std(axes) + 1e-6})
  return stats


def audio_vae_stage(config, workdir: str, builder):
  """The audio VAE through the one loop (audio.enabled), on the dataset's soundtracks; None
  when the config has no audio."""
  if not config.audio.enabled:
    return None
  stage_cfg, seed = config.train.audio, config.seed + 3
  return train(build_audio_vae(config, seed),
               functools.partial(audio_vae_loss, kl_weight=config.audio.kl_weight),
               make_loader(builder, "train", batch_size=stage_cfg.batch_size, seed=seed),
               stage_cfg, os.path.join(workdir, "audio_vae"), seed=seed, desc="audio",
               prepare_batch=lambda batch: dict(audio=batch["audio"]))


def held_out_adherence(config, tokenizer, vae, stats):
  """The denoiser stage's `evaluate`: colour and direction accuracy (`vdm eval adherence`) of
  the EMA weights on `train.dit.eval_num` held-out prompts, sampled with the model's defaults
  (simple data only; other kinds get no score)."""
  if config.data.kind != "simple":
    return None
  from vdm.eval.adherence import summarize
  from vdm.eval.run import adherence_rows
  from vdm.generate.pipeline import Pipeline

  def evaluate(denoiser) -> dict:
    pipe = Pipeline(config, tokenizer, vae, denoiser, stats)
    summary = summarize(adherence_rows(pipe, num=config.train.dit.eval_num, progress=False))
    print(f"[dit] held-out colour {summary['color_accuracy']:.1%}, direction "
          f"{summary['direction_accuracy']:.1%} ({summary['n']} prompts)")
    return dict(color_accuracy=summary["color_accuracy"],
                direction_accuracy=summary["direction_accuracy"])

  return evaluate


def vae_clip(video, stage_cfg):
  """The frames [B, T', H, W, 3] of a clip batch [B, T, H, W, 3] the VAE stage trains on: the
  first `train.vae.crop_frames` (0: all). A causal conv VAE is the same function of a frame and
  the few before it at any clip length, so short clips teach it nearly what long ones do, at a
  fraction of the cost of long high-resolution clips."""
  n = stage_cfg.crop_frames
  return video[:, :n] if n else video


def build_vae_critic(config) -> Critic:
  """The VAE stage's patch discriminator (vae.disc_*) with its own AdamW (GAN-style betas)."""
  disc = PatchDiscriminator(config.vae.disc_channels,
                            rngs=nnx.Rngs(config.seed + 2))
  tx = optax.chain(optax.clip_by_global_norm(config.train.vae.grad_clip),
                   optax.adamw(config.train.vae.learning_rate, b1=0.5, b2=0.9, weight_decay=0.0))
  return Critic(disc, discriminator_loss, tx, start=config.vae.disc_start)


def run_t2v_training(config, workdir: str, *, until: str = "export") -> str:
  """The text-to-video task: runs the stages in order up to and including `until`; returns the
  model directory ('' when it stops before the export)."""
  if until not in STAGES:
    raise ValueError(f"--until {until!r}: allowed {list(STAGES)}")
  placement = placement_of(config)  # a bad parallel section fails before any work
  for name in ("text", "vae", "dit"):
    placement.check_batch(config.train[name].batch_size, f"train.{name}.batch_size",
                          config.train[name].accumulate)
  check_workdir_config(config, workdir, record=False)
  # A named config may leave init_from to --set, so this is checked here, not by validation.
  if config.train.vae.steps == 0 and not (config.init_from or config.vae.init_from):
    raise ValueError("train.vae.steps=0 keeps a pretrained VAE as it is: set init_from, or "
                     "train.vae.steps >= 1")
  check_vae_init(config)
  builder = caption_builder(config, workdir)
  # Recorded only now: a run whose dataset does not load (a wrong data.name) trained nothing
  # and must not tie the workdir to the config that named it.
  record_workdir_config(config, workdir)
  # Fine-tuning (init_from): the pretrained model brings tokenizer, text encoder, VAE and latent
  # statistics; its denoiser is where the dit stage starts (vdm.train.pretrained).
  pretrained = load_pretrained(config) if config.init_from else None
  tokenizer = train_tokenizer_stage(config, workdir, builder,
                                    pretrained=pretrained.tokenizer if pretrained else None)
  if until == "tokenizer":
    return ""
  text_init = text_pretrain_stage(config, workdir, tokenizer, builder, placement)
  text_init = text_init or config.text.init_from
  if until == "text":
    return ""
  builder = builder or dataset_builder(config, workdir)

  vae_cfg = config.train.vae
  disc_weight = config.vae.disc_weight
  if config.vae.init_from:  # a trained VAE, used as is: the vae stage trains nothing
    vae = load_vae(config.vae.init_from, config)
  elif vae_cfg.steps == 0:  # (init_from only: checked at the start) its VAE as it is
    vae = build_vae(config, config.seed)
    start_vae(vae, pretrained)
    print(f"[vae] init_from={config.init_from!r}: its VAE, as it is (train.vae.steps = 0)")
  else:
    vae = build_vae(config, config.seed)
    if pretrained is not None:  # fine-tuning: a resumed run's checkpoint then overrides this
      start_vae(vae, pretrained)
    vae = train(vae, functools.partial(
        vae_loss, kl_weight=config.vae.kl_weight, **(
            dict(disc_weight=disc_weight) if disc_weight else {})),
        make_loader(builder, "train", batch_size=vae_cfg.batch_size, seed=config.seed,
                    rows=placement.process_rows(vae_cfg.batch_size)),
        vae_cfg, os.path.join(workdir, "vae"), seed=config.seed, desc="vae",
        prepare_batch=lambda batch: dict(video=vae_clip(batch["video"], vae_cfg)),
        critic=build_vae_critic(config) if disc_weight else None, placement=placement)
  if until == "vae":
    return ""
  audio_vae = audio_vae_stage(config, workdir, builder)
  if until == "audio":
    return ""
  # The VAE encodes each process's own rows on its own device (a whole copy in each process).
  vae = distributed.local_copy(vae)

  dit_cfg = config.train.dit
  # The cache: every clip encoded once (and, with a frozen encoder, every caption), keyed by
  # the weights that made it (vdm/train/latent_cache.py).
  # Batches that need more of a clip than its latents and scalar fields (the soundtrack, object
  # and camera paths, the exact flow, pixels to draw a prompt switch into) read the dataset.
  needs_clips = (audio_vae is not None or config.control.trajectory or config.control.camera
                 or config.diffusion.motion_supervision_weight > 0
                 or config.control.prompt_switch_prob > 0)
  cached = (LatentSource(build_latent_cache(builder, "train", vae, config.vae), "train")
            if dit_cfg.cache and not needs_clips else None)
  stats_path = os.path.join(workdir, "latent_stats.json")
  if pretrained is not None and not os.path.exists(stats_path) and distributed.is_lead():
    write_latent_stats(stats_path, pretrained.latent_stats)  # the scale its denoiser knows
  if not os.path.exists(stats_path) and distributed.is_lead():
    write_latent_stats(stats_path, cache_statistics(cached) if cached else latent_statistics(
        vae, make_loader(builder, "train", batch_size=32, seed=config.seed),
        audio_vae=audio_vae))
  distributed.barrier("latent_stats")
  stats = read_latent_stats(stats_path)

  encode = jax.jit(lambda video: (vae.encode(normalize_pixels(video))[0] - stats["mean"])
                   / stats["std"])
  if audio_vae is not None:
    encode_audio = jax.jit(lambda pcm: (audio_vae.encode_audio(pcm_to_float(pcm))[0]
                                        - stats["audio_mean"]) / stats["audio_std"])

  d = config.diffusion
  denoiser = build_denoiser(config, tokenizer.vocab_size, config.seed + 1)
  if text_init:  # a resumed run's checkpoint then overrides this, as it does the random init
    init_text_encoder(denoiser.text, text_init)
  if pretrained is not None:
    fresh = start_denoiser(config, denoiser, pretrained)
    if fresh:
      print(f"[dit] init_from={config.init_from}: {len(fresh)} parameters start fresh: "
            f"{', '.join(fresh[:12])}{', ...' if len(fresh) > 12 else ''}")
  frozen = frozen_parameters(config, denoiser)
  # A frozen encoder's outputs are fixed from the start (it is restored with the DiT only on
  # resume, and then still equals its init): cache them.
  text_cache = (build_text_cache(builder, "train", cached.captions, denoiser.text, tokenizer,
                                 config.text.max_length)
                if cached is not None and frozen else None)

  prepare_batch = denoiser_batch_fn(
      config, encode, tokenizer, temporal_stride=vae.temporal_downsample,
      spatial_stride=vae.spatial_downsample, latent_stats=stats, text_cache=text_cache,
      encode_audio=encode_audio if audio_vae is not None else None)

  joint = {}
  if audio_vae is not None:
    joint = dict(audio=config.audio, audio_per_frame=audio_latents_per_frame(config),
                 video_temporal_downsample=config.vae.temporal_downsample)
  loss = functools.partial(denoiser_loss, cfg=d, temporal_patch=config.dit.temporal_patch,
                           control=config.control, **joint)
  rows = placement.process_rows(dit_cfg.batch_size)
  loader = (make_source_loader(cached, batch_size=dit_cfg.batch_size, seed=config.seed + 1,
                               rows=rows)
            if cached is not None else
            make_loader(builder, "train", batch_size=dit_cfg.batch_size, seed=config.seed + 1,
                        rows=rows))
  denoiser = train(denoiser, loss, loader, dit_cfg, os.path.join(workdir, "dit"),
                   seed=config.seed + 1, prepare_batch=prepare_batch, desc="dit", frozen=frozen,
                   placement=placement,
                   evaluate=held_out_adherence(config, tokenizer, vae, stats)
                   if dit_cfg.eval_every else None)
  if until == "dit":
    return ""
  model_dir = os.path.join(workdir, "model")
  if distributed.is_lead():
    shutil.rmtree(model_dir, ignore_errors=True)  # the export is derived: always rewrite it
  distributed.barrier("export")
  # The model directory stands alone: LoRA is folded into the weights (a plain model of the same
  # config) and init_from, whose weights it now holds, is cleared.
  config, denoiser = without_lora(config, denoiser, tokenizer.vocab_size)
  if config.init_from:
    config = config.copy_and_resolve_references()
    config.init_from = ""
  save_model_dir(model_dir, config=config, tokenizer=tokenizer, vae=vae, denoiser=denoiser,
                 latent_stats=stats, audio_vae=audio_vae)
  if distributed.is_lead():
    write_provenance(model_dir, config.seed)
  return model_dir


# config.task -> the function that trains it, (config, workdir, *, until) -> model directory.
# A new task is one such function and one entry here.
TASKS = {"t2v": run_t2v_training, "sr": run_sr_training, "distill": run_distill_training}


def run_training(config, workdir: str, *, until: str = "export") -> str:
  """Trains what `config.task` names (`TASKS`: 't2v' the text-to-video model, the default; 'sr'
  the learned upscaler, `vdm.train.upscaler`; 'distill' a few-step student of a t2v model,
  `vdm.train.distill`); returns the exported model directory."""
  task = config.task
  if task not in TASKS:
    raise ValueError(f"config.task {task!r}: allowed {list(TASKS)}")
  return TASKS[task](config, workdir, until=until)
