"""`vdm train`: tokenizer -> [text encoder pretraining] -> VAE -> [audio VAE] -> denoiser ->
exported model directory, each stage resumable.

Every stage goes through the one loop in `vdm.train.loop`; a finished stage is not retrained (its
last checkpoint is restored), so rerunning `vdm train` on a workdir continues where it stopped.
`config.task` picks what is trained (`TASKS`): this text-to-video model, or the learned upscaler
of `vdm.train.upscaler`.
"""
from __future__ import annotations

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vdm.config import config_from_json
from vdm.config.t2v import audio_latents_per_frame, check_vae_init
from vdm.data import kinds
from vdm.data.loader import make_caption_loader, make_loader, make_source_loader
from vdm.data.simple import latent_motion
from vdm.audio.vae import audio_vae_loss, pcm_to_float
from vdm.models import (build_audio_vae, build_denoiser, build_vae, copy_params, load_model_dir,
                        load_vae, read_latent_stats, save_model_dir, write_latent_stats)
from vdm.nn import normalize_pixels
from vdm.provenance import write_provenance
from vdm.text.pretrain import (build_pretrain_model, evaluate_span_corruption, export_encoder,
                               init_paths, init_text_encoder, span_corruption_loss)
from vdm.text.tokenizer import Tokenizer, train_tokenizer
from vdm.train.latent_cache import (LatentSource, build_latent_cache, build_text_cache,
                                    cache_statistics)
from vdm.train.loop import Critic, train
from vdm.train.batches import control_batch, held_out_captions, training_captions
from vdm.train.distill import run_distill_training
from vdm.train.objectives import denoiser_loss
from vdm.train.upscaler import run_sr_training
from vdm.vae.discriminator import PatchDiscriminator, discriminator_loss
from vdm.vae.loss import vae_loss

STAGES = ("tokenizer", "text", "vae", "audio", "dit", "export")


def dataset_builder(config, workdir: str):
  """The prepared TFDS builder of config.data (any registered `data.kind`, vdm.data.kinds)."""
  return kinds.build(config.data, config.data.data_dir or os.path.join(workdir, "data"))


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
  """Writes the config a workdir is trained with to WORKDIR/config.json."""
  path = os.path.join(workdir, "config.json")
  os.makedirs(workdir, exist_ok=True)
  # Write then rename: a kill mid-write must not leave a half file that blocks every resume.
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(path + ".tmp", path)


def caption_builder(config, workdir: str):
  """The dataset the text-only stages (tokenizer, text pretraining) read captions from: None for
  a kind whose captions come from a grammar (the spine's; no clips are built for them), else the
  prepared `dataset_builder`."""
  from_grammar = kinds.DATA_KINDS[config.data.kind].caption_corpus is not None
  return None if from_grammar else dataset_builder(config, workdir)


def train_tokenizer_stage(config, workdir: str, builder=None) -> Tokenizer:
  """The workdir's tokenizer, trained once on `training_captions`, or the one a pretrained
  encoder came with (`text.init_from`): its rows are indexed by that tokenizer's ids."""
  path = os.path.join(workdir, "tokenizer.model")
  init_from = config.text.init_from
  given = init_paths(init_from)[1] if init_from else None
  if config.init_from:  # a model being fine-tuned keeps the tokenizer its embeddings index
    given = os.path.join(config.init_from, "tokenizer.model")
  if given is not None:
    with open(given, "rb") as f:
      proto = f.read()
    if os.path.exists(path):
      with open(path, "rb") as f:
        if f.read() != proto:
          raise ValueError(f"workdir {workdir} has a tokenizer other than the one of "
                           f"{'init_from' if config.init_from else 'text.init_from'}="
                           f"{config.init_from or init_from!r}; use a new --workdir")
    else:
      Tokenizer(proto).save(path)
  if not os.path.exists(path):
    Tokenizer(train_tokenizer(training_captions(config, builder),
                              vocab_size=config.text.vocab_size,
                              model_type=config.text.tokenizer)).save(path)
  return Tokenizer.load(path)


def text_pretrain_stage(config, workdir: str, tokenizer: Tokenizer, builder=None) -> str:
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
  model = train(initial, loss,
                make_caption_loader(training_captions(config, builder),
                                    batch_size=stage_cfg.batch_size, seed=seed),
                stage_cfg, os.path.join(workdir, "text"), seed=seed,
                prepare_batch=prepare_batch, desc="text")
  directory = export_encoder(os.path.join(workdir, "text_encoder"), model.encoder, tokenizer,
                             config)
  if held_out:  # the exported (EMA) weights on captions the stage never trained on
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
  check_workdir_config(config, workdir, record=False)
  check_vae_init(config)
  builder = caption_builder(config, workdir)
  # Recorded only now: a run whose dataset does not load (a wrong data.name) trained nothing
  # and must not tie the workdir to the config that named it.
  record_workdir_config(config, workdir)
  tokenizer = train_tokenizer_stage(config, workdir, builder)
  if until == "tokenizer":
    return ""
  text_init = text_pretrain_stage(config, workdir, tokenizer, builder)
  text_init = text_init or config.text.init_from
  if until == "text":
    return ""
  builder = builder or dataset_builder(config, workdir)

  vae_cfg = config.train.vae
  disc_weight = config.vae.disc_weight
  source = load_model_dir(config.init_from) if config.init_from else None
  if config.vae.init_from:  # a trained VAE, used as is: the vae stage trains nothing
    vae = load_vae(config.vae.init_from, config)
  else:
    vae = build_vae(config, config.seed)
    if source is not None:  # fine-tuning: a resumed run's checkpoint then overrides this
      lacking = copy_params(source[2], vae)
      if lacking:
        raise ValueError(f"init_from={config.init_from!r}: its VAE lacks {lacking[:8]} of this "
                         "config's VAE (vae.* must match the model directory's)")
    vae = train(vae, functools.partial(
        vae_loss, kl_weight=config.vae.kl_weight, **(
            dict(disc_weight=disc_weight) if disc_weight else {})),
        make_loader(builder, "train", batch_size=vae_cfg.batch_size, seed=config.seed),
        vae_cfg, os.path.join(workdir, "vae"), seed=config.seed, desc="vae",
        prepare_batch=lambda batch: dict(video=vae_clip(batch["video"], vae_cfg)),
        critic=build_vae_critic(config) if disc_weight else None)
  if until == "vae":
    return ""
  audio_vae = audio_vae_stage(config, workdir, builder)
  if until == "audio":
    return ""

  dit_cfg = config.train.dit
  # The cache: every clip encoded once (and, with a frozen encoder, every caption), keyed by
  # the weights that made it (vdm/train/latent_cache.py).
  # Batches that need more of a clip than its latents and scalar fields (the soundtrack, object
  # and camera paths, the exact flow) read the dataset itself.
  needs_clips = (audio_vae is not None or config.control.trajectory or config.control.camera
                 or config.diffusion.motion_supervision_weight > 0)
  cached = (LatentSource(build_latent_cache(builder, "train", vae, config.vae), "train")
            if dit_cfg.cache and not needs_clips else None)
  stats_path = os.path.join(workdir, "latent_stats.json")
  if source is not None and not os.path.exists(stats_path):  # the scale its denoiser knows
    write_latent_stats(stats_path, source[4])
  if not os.path.exists(stats_path):
    write_latent_stats(stats_path, cache_statistics(cached) if cached else latent_statistics(
        vae, make_loader(builder, "train", batch_size=32, seed=config.seed),
        audio_vae=audio_vae))
  stats = read_latent_stats(stats_path)

  frozen = ("text",) if config.text.freeze else ()  # the DiT against a fixed text encoder
  encode = jax.jit(lambda video: (vae.encode(normalize_pixels(video))[0] - stats["mean"])
                   / stats["std"])
  if audio_vae is not None:
    encode_audio = jax.jit(lambda pcm: (audio_vae.encode_audio(pcm_to_float(pcm))[0]
                                        - stats["audio_mean"]) / stats["audio_std"])
  mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
  empty_ids, empty_mask = tokenizer.encode([""], config.text.max_length)

  d = config.diffusion
  motion_weight = d.motion_supervision_weight
  denoiser = build_denoiser(config, tokenizer.vocab_size, config.seed + 1)
  if text_init:  # a resumed run's checkpoint then overrides this, as it does the random init
    init_text_encoder(denoiser.text, text_init)
  # A frozen encoder's outputs are fixed from the start (it is restored with the DiT only on
  # resume, and then still equals its init): cache them.
  text_cache = (build_text_cache(builder, "train", cached.captions, denoiser.text, tokenizer,
                                 config.text.max_length)
                if cached is not None and frozen else None)

  def prepare_batch(batch):
    captions = list(batch["caption"])
    n = len(captions)
    if "latents" in batch:
      latents = (batch["latents"] - mean) / std
    else:
      latents = encode(batch["video"])
    if text_cache is not None:
      text, mask = text_cache.lookup(captions)
      empty_text, empty_mask_ = text_cache.lookup([""])
      out = dict(latents=latents, text=text, mask=mask,
                 empty_text=np.repeat(empty_text, n, 0), empty_mask=np.repeat(empty_mask_, n, 0))
    else:
      ids, mask = tokenizer.encode(captions, config.text.max_length)
      out = dict(latents=latents, ids=ids, mask=mask,
                 empty_ids=np.repeat(empty_ids, n, 0), empty_mask=np.repeat(empty_mask, n, 0))
    out.update(control_batch(config, batch))
    if audio_vae is not None:
      out["audio_latents"] = encode_audio(batch["audio"])
    if motion_weight:  # the exact flow on the latent grid, from the clip's ground truth
      height, width = config.data.height, config.data.width
      flows, valids = zip(*(latent_motion(
          int(batch["shape"][i]), batch["center"][i], float(batch["radius"][i]), height, width,
          temporal_stride=vae.temporal_downsample, spatial_stride=vae.spatial_downsample)
          for i in range(n)))
      out.update(latent_flow=np.stack(flows), flow_valid=np.stack(valids))
    return out

  joint = {}
  if audio_vae is not None:
    joint = dict(audio=config.audio, audio_per_frame=audio_latents_per_frame(config),
                 video_temporal_downsample=config.vae.temporal_downsample)
  loss = functools.partial(denoiser_loss, cfg=d, temporal_patch=config.dit.temporal_patch,
                           control=config.control, **joint)
  if source is not None:
    fresh = copy_params(source[3], denoiser)
    if fresh:
      print(f"[dit] init_from={config.init_from}: {len(fresh)} parameters start fresh: "
            f"{', '.join(fresh)}")
  loader = (make_source_loader(cached, batch_size=dit_cfg.batch_size, seed=config.seed + 1)
            if cached is not None else
            make_loader(builder, "train", batch_size=dit_cfg.batch_size, seed=config.seed + 1))
  denoiser = train(denoiser, loss, loader, dit_cfg, os.path.join(workdir, "dit"),
                   seed=config.seed + 1, prepare_batch=prepare_batch, desc="dit", frozen=frozen,
                   evaluate=held_out_adherence(config, tokenizer, vae, stats)
                   if dit_cfg.eval_every else None)
  if until == "dit":
    return ""
  model_dir = os.path.join(workdir, "model")
  shutil.rmtree(model_dir, ignore_errors=True)  # the export is derived: always rewrite it whole
  save_model_dir(model_dir, config=config, tokenizer=tokenizer, vae=vae, denoiser=denoiser,
                 latent_stats=stats, audio_vae=audio_vae)
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
