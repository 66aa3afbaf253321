"""`vdm train`: tokenizer -> VAE -> denoiser -> exported model directory, each stage resumable.

Every stage goes through the one loop in `vdm.train.loop`; a finished stage is not retrained (its
last checkpoint is restored), so rerunning `vdm train` on a workdir continues where it stopped.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np

from vdm.data import synthetic
from vdm.data.pipeline import make_loader
from vdm.data.tfds_builder import prepare
from vdm.models import (build_denoiser, build_vae, read_latent_stats, save_model_dir,
                        write_latent_stats)
from vdm.text.tokenizer import Tokenizer, train_tokenizer
from vdm.train.loop import train
from vdm.train.objectives import denoiser_loss
from vdm.vae.loss import vae_loss, video_to_unit_range

STAGES = ("tokenizer", "vae", "dit", "export")


def git_commit() -> str:
  """The commit of the vdm source tree, or 'unknown' outside a git checkout."""
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    return out.stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def dataset_builder(config, workdir: str):
  """The prepared TFDS builder of config.data: the spine's clips, or any `data.kind` (scenes,
  moving_mnist, an imported folder) through `vdm.data.scenes_builder.from_config`."""
  d = config.data
  data_dir = d.data_dir or os.path.join(workdir, "data")
  if d.get("kind", "simple") != "simple":
    from vdm.data.scenes_builder import from_config
    return from_config(d, data_dir)
  return prepare(data_dir, height=d.height, width=d.width, frames=d.frames, fps=d.fps,
                 num_train=d.num_train, num_test=d.num_test, seed=d.seed)


def _check_workdir_config(config, workdir: str) -> None:
  """A workdir belongs to one config: refuse to resume it with a different model or data."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except ValueError as e:
      raise ValueError(f"workdir {workdir}: {path} is not valid JSON ({e}); it records the "
                       "config the checkpoints were trained with. Restore it or use a new "
                       "--workdir.") from None
    new = json.loads(config.to_json())
    differ = [f"{section}.{k}: {old[section].get(k)!r} -> {v!r}"
              for section in ("data", "text", "vae", "dit") for k, v in new[section].items()
              if old.get(section, {}).get(k) != v]
    if differ:
      raise ValueError(f"workdir {workdir} was trained with a different config; fields that "
                       f"differ: {differ}. Use a new --workdir.")
  os.makedirs(workdir, exist_ok=True)
  # Write then rename: a kill mid-write must not leave a half file that blocks every resume.
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(path + ".tmp", path)


def train_tokenizer_stage(config, workdir: str, builder=None) -> Tokenizer:
  """The workdir's tokenizer, trained once: on the spine's caption grammar, or on the train
  captions of any other dataset (`vdm.data.dataset_tokenizer.train_captions`)."""
  path = os.path.join(workdir, "tokenizer.model")
  if not os.path.exists(path):
    if config.data.get("kind", "simple") == "simple" or builder is None:
      corpus = synthetic.caption_corpus(config.data.seed, 20_000)
    else:
      from vdm.data.dataset_tokenizer import train_captions
      corpus = train_captions(builder)
    Tokenizer(train_tokenizer(corpus, vocab_size=config.text.vocab_size,
                              model_type=config.text.tokenizer)).save(path)
  return Tokenizer.load(path)


def latent_statistics(vae, loader, num_batches: int = 8) -> dict:
  """Per-channel mean and std of VAE latent means over a few training batches."""
  encode = jax.jit(lambda video: vae.encode(video_to_unit_range(video))[0])
  iterator = iter(loader)
  latents = np.concatenate([np.asarray(encode(next(iterator)["video"]))
                            for _ in range(num_batches)])
  axes = tuple(range(latents.ndim - 1))
  return dict(mean=latents.mean(axes), std=latents.std(axes) + 1e-6)


def run_training(config, workdir: str, *, until: str = "export") -> str:
  """Runs the stages in order up to and including `until`; returns the model directory.

  A config with task = 'sr' trains the learned upscaler instead (`vdm.post.sr`).
  """
  if config.get("task", "t2v") == "sr":
    from vdm.post.sr import run_sr_training
    return run_sr_training(config, workdir)
  if until not in STAGES:
    raise ValueError(f"--until {until!r}: allowed {list(STAGES)}")
  _check_workdir_config(config, workdir)
  builder = dataset_builder(config, workdir)
  tokenizer = train_tokenizer_stage(config, workdir, builder)
  if until == "tokenizer":
    return ""

  vae_cfg = config.train.vae
  vae = train(build_vae(config, config.seed), functools.partial(
      vae_loss, kl_weight=config.vae.kl_weight),
      make_loader(builder, "train", batch_size=vae_cfg.batch_size, seed=config.seed),
      vae_cfg, os.path.join(workdir, "vae"), seed=config.seed, desc="vae",
      prepare_batch=lambda batch: dict(video=batch["video"]))
  if until == "vae":
    return ""

  stats_path = os.path.join(workdir, "latent_stats.json")
  if not os.path.exists(stats_path):
    write_latent_stats(stats_path, latent_statistics(
        vae, make_loader(builder, "train", batch_size=32, seed=config.seed)))
  stats = read_latent_stats(stats_path)

  dit_cfg = config.train.dit
  if config.text.get("freeze", False):  # train the DiT against a fixed text encoder
    dit_cfg = dit_cfg.copy_and_resolve_references()
    dit_cfg.frozen = tuple(dit_cfg.get("frozen", ())) + ("text",)
  encode = jax.jit(lambda video: (vae.encode(video_to_unit_range(video))[0] - stats["mean"])
                   / stats["std"])
  empty_ids, empty_mask = tokenizer.encode([""], config.text.max_length)

  def prepare_batch(batch):
    ids, mask = tokenizer.encode(list(batch["caption"]), config.text.max_length)
    n = len(ids)
    return dict(latents=encode(batch["video"]), ids=ids, mask=mask,
                empty_ids=np.repeat(empty_ids, n, 0), empty_mask=np.repeat(empty_mask, n, 0))

  d = config.diffusion
  loss = functools.partial(denoiser_loss, kind=d.timestep_sampling,
                           per_frame_prob=d.per_frame_levels_prob, text_dropout=d.text_dropout,
                           teacher_forcing=d.get("teacher_forcing", False),
                           causal_prob=d.get("causal_prob", 0.0),
                           causal_chunks=tuple(d.get("causal_chunks", (1,))),
                           max_frame_offset=d.get("max_frame_offset", 0),
                           temporal_consistency_weight=d.get("temporal_consistency_weight", 0.0),
                           temporal_patch=config.dit.get("temporal_patch", 1))
  denoiser = train(build_denoiser(config, tokenizer.vocab_size, config.seed + 1), loss,
                   make_loader(builder, "train", batch_size=dit_cfg.batch_size,
                               seed=config.seed + 1),
                   dit_cfg, os.path.join(workdir, "dit"), seed=config.seed + 1,
                   prepare_batch=prepare_batch, desc="dit")
  if until == "dit":
    return ""
  model_dir = os.path.join(workdir, "model")
  shutil.rmtree(model_dir, ignore_errors=True)  # the export is derived: always rewrite it whole
  save_model_dir(model_dir, config=config, tokenizer=tokenizer, vae=vae, denoiser=denoiser,
                 latent_stats=stats)
  with open(os.path.join(model_dir, "provenance.json"), "w") as f:
    json.dump(dict(git_commit=git_commit(), seed=config.seed), f, indent=2)
  return model_dir
