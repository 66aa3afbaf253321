"""Few-step students of a text-to-video model: the `distill` task of `vdm train` (configs/fast.py).

The student has the teacher's shape and starts as a copy of it (or of `init_from`); it trains
through the one loop (`vdm.train.loop.train`) with one recipe's loss, whose math is the pure
functions of `vdm.diffusion.distill`:

  guidance      the guidance scale w is an input (dit.guidance_input); the student regresses the
                teacher's classifier-free guided velocity at w, drawn in [guidance_min, guidance],
                at levels and masks drawn as the teacher was trained: one forward instead of two;
  shortcut      the step size is an input (dit.step_input); step 0 regresses the guided teacher,
                larger steps the mean of two of the student's own half steps (self-consistency);
                sampled with the 'shortcut' sampler at any step count;
  ode_init      the teacher's guided ODE trajectories (generated once into WORKDIR/ode_pairs.npz:
                the `ode_init` data Self-Forcing's authors did not release); the student regresses
                each trajectory's clean end from its points at the student's levels (per chunk
                under a block-causal mask with ode.causal, the init of an autoregressive student);
  dmd           distribution matching: the few-step generator's samples (its own rollout with
                the consistency sampler, gradient through one randomly chosen exit step) move
                along the difference of the frozen guided teacher and a fake score (the loop's
                critic, a copy of the teacher trained on the generator's samples);
  self_forcing  dmd on the autoregressive student's own rollout: chunk by chunk with the KV cache,
                its previous outputs as context, gradient through each chunk's exit step; with
                self_forcing.rollout = k > 1 it rolls out k training lengths with the cache's
                window and scores a random training-length window (long-horizon training);
  finetune      the teacher's own flow-matching loss on data, or teacher forcing: the baseline
                that gets the same training compute without distillation.

The export (WORKDIR/model) is a model directory `vdm sample` runs: the teacher's config plus what
sampling the student needs (its inputs, sampler, steps, levels as `sample.timesteps` and
`sample.shift`, and the guidance distilled into it, `student_config`), and `distill.json`
recording this run's config.

Frozen networks (the teacher) ride in each batch as arguments of the compiled step, not as
constants baked into it: the program stays small and compiles as fast as a plain step.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from vdm.config import config_from_json, validate
from vdm.config.distill import SCHEMA, is_model_dir
from vdm.config.fields import get, walk
from vdm.data import kinds
from vdm.data.loader import make_array_loader, make_caption_loader, make_loader
from vdm.diffusion import distill
from vdm.diffusion.flow import broadcast_levels, interpolate
from vdm.diffusion.guidance import guide
from vdm.diffusion.objectives import sample_timesteps
from vdm.generate.kv_cache import empty_cache, write_frames
from vdm.generate.modes import (allowed_chunks, block_causal_mask, chunk_bounds, chunk_ids,
                                time_grid)
from vdm.models import build_denoiser, copy_params, load_model_dir, save_model_dir
from vdm.nn import normalize_pixels
from vdm.provenance import write_json, write_provenance
from vdm.train.batches import caption_batch_fn, denoiser_batch_fn, training_captions
from vdm.train.loop import Critic, train
from vdm.train.objectives import denoiser_loss, training_inputs

# Fields whose change does not make a workdir another run: how long and how often to log.
_RESUMABLE = ("train.steps", "train.log_every", "train.checkpoint_every")


# ----------------------------------------------------------------------------- the student

def student_schedule(config) -> tuple[float, ...]:
  """The levels a few-step student steps from: time_grid(schedule.steps, schedule.shift)
  without its final 0."""
  s = config.schedule
  return tuple(float(t) for t in time_grid(s.steps, shift=s.shift)[:-1])


def student_config(teacher_config, config) -> ml_collections.ConfigDict:
  """The student's t2v config: the teacher's, with the inputs the recipe adds and the sampling
  defaults the student is made for (validated)."""
  student = config_from_json(teacher_config.to_json())
  student.name = config.name
  recipe, s = config.recipe, student.sample
  if recipe == "guidance":  # sampled at the teacher's default scale, now an input
    student.dit.guidance_input = True
  elif recipe == "shortcut":
    student.dit.step_input = True
    s.update(sampler="shortcut", steps=config.schedule.steps, shift=float(config.schedule.shift),
             guidance=1.0, distilled_guidance=float(config.guidance))
  elif recipe == "finetune":  # sampled as the teacher; its config records the level scheme
    student.diffusion.update(finetune_levels(config))
  else:  # ode_init, dmd, self_forcing: x0 predictions at fixed levels, re-noised in between
    # Its levels as a few-step generator lists them: the even grid's, warped by the shift at
    # sampling (time_grid(steps, shift, spacing=timesteps) == student_schedule + (0,)).
    levels = time_grid(config.schedule.steps)[:-1]
    s.update(sampler="consistency", steps=config.schedule.steps,
             timesteps=tuple(float(t) for t in levels), shift=float(config.schedule.shift),
             guidance=1.0, distilled_guidance=float(config.guidance))
  autoregressive = recipe == "self_forcing" or (recipe == "ode_init" and config.ode.causal)
  if autoregressive:
    sf = config.self_forcing
    s.update(mode="autoregressive", chunk=sf.chunk, context_noise=float(sf.context_noise))
  validate(student)
  return student


def finetune_levels(config) -> dict:
  """The level-scheme fields of the finetune recipe: the teacher's own, or teacher forcing over
  the teacher's chunk sizes (finetune.teacher_forcing)."""
  if not config.finetune.teacher_forcing:
    return {}
  return dict(teacher_forcing=True, causal_prob=1.0, per_frame_levels_prob=0.0, given_prob=0.0)


def start_from(source: nnx.Module, target: nnx.Module) -> list[str]:
  """`vdm.models.copy_params` of source into target, the copied arrays the target's own (the
  student's buffers are donated to each training step; the teacher's must survive it); returns
  the names of target's parameters source lacks (a student's new inputs keep their init)."""
  fresh = copy_params(source, target)
  nnx.update(target, jax.tree.map(jnp.copy, nnx.state(target, nnx.Param)))
  return fresh


def latent_shape(teacher_config, vae) -> tuple[int, int, int, int]:
  """(T, h, w, C) of a training clip's normalised latents."""
  d = teacher_config.data
  return (vae.latent_frames(d.frames), d.height // vae.spatial_downsample,
          d.width // vae.spatial_downsample, teacher_config.vae.latent_channels)


# ----------------------------------------------------------------------------- velocity functions

def _teacher(teacher_def, batch):
  return nnx.merge(teacher_def, batch["teacher"])


def guided_fn(model, batch, scale, temporal_mask=None, offset=0):
  """(x, t) -> the classifier-free guided velocity of `model` (a Denoiser) for the batch's
  prompts against the empty prompt at `scale` (a number or [B]): one call on 2B rows."""
  ids = jnp.concatenate([batch["ids"], batch["empty_ids"]])
  mask = jnp.concatenate([batch["mask"], batch["empty_mask"]])

  def velocity(x, t):
    b = x.shape[0]
    both = model(jnp.concatenate([x, x]), jnp.concatenate([t, t]), ids, mask, temporal_mask,
                 offset)
    return guide(both[:b], both[b:], scale=broadcast_levels(jnp.asarray(scale), x))

  return velocity


def _stopped(module: nnx.Module) -> nnx.Module:
  """The module with its weights' gradients stopped (the no-gradient steps of a rollout)."""
  graphdef, state = nnx.split(module)
  return nnx.merge(graphdef, jax.lax.stop_gradient(state))


# ----------------------------------------------------------------------------- recipes' losses

def guidance_loss(student, batch, rng, *, teacher_def, diffusion, temporal_patch: int,
                  scales: tuple[float, float]):
  """Guidance distillation on data clips (batch 'latents' [B, T, h, w, C] and captions)."""
  x0 = batch["latents"]
  b, t = x0.shape[:2]
  k = jax.random.split(rng, 6)
  levels, _, temporal_mask, offset = training_inputs(k[0], k[1], k[2], k[3], b, t, diffusion,
                                                     temporal_patch=temporal_patch)
  x = interpolate(x0, jax.random.normal(k[4], x0.shape), levels)
  w = jax.random.uniform(k[5], (b,), minval=scales[0], maxval=scales[1])
  teacher = _teacher(teacher_def, batch)
  guided = lambda x, t, s: guided_fn(teacher, batch, s, temporal_mask, offset)(x, t)  # noqa
  stud = lambda x, t, s: student(x, t, batch["ids"], batch["mask"], temporal_mask,  # noqa
                                 offset, guidance=s)
  loss = distill.guidance_distillation_loss(stud, guided, x, levels, w)
  return loss, dict(guided_mse=loss, mean_scale=w.mean())


def shortcut_loss(student, batch, rng, *, teacher_def, diffusion, temporal_patch: int,
                  scale: float, self_fraction: float, max_steps: int):
  """Shortcut distillation on data clips: the first round(B * self_fraction) clips train
  self-consistency (half of them from level 1, where sampling starts; step sizes log-uniform
  in [t / max_steps, t]), the others regress the guided teacher at step 0."""
  x0 = batch["latents"]
  b, t = x0.shape[:2]
  n_self = int(round(b * self_fraction))
  k = jax.random.split(rng, 8)
  levels, _, temporal_mask, offset = training_inputs(k[0], k[1], k[2], k[3], b, t, diffusion,
                                                     temporal_patch=temporal_patch)
  noise = jax.random.normal(k[4], x0.shape)

  def rows(lo, hi):
    return {name: batch[name][lo:hi] for name in ("ids", "mask", "empty_ids", "empty_mask")}

  def student_fn(sub):
    return lambda x, t, d: student(x, t, sub["ids"], sub["mask"], temporal_mask, offset,  # noqa
                                   step=d)

  metrics, loss = {}, 0.0
  if n_self < b:
    base = rows(n_self, b)
    lv = levels[n_self:]
    x = interpolate(x0[n_self:], noise[n_self:], lv)
    teacher = guided_fn(_teacher(teacher_def, batch), base, scale, temporal_mask, offset)
    metrics["base_loss"] = distill.shortcut_base_loss(student_fn(base), teacher, x, lv)
    loss = loss + metrics["base_loss"]
  if n_self > 0:
    lv = jnp.where(jax.random.bernoulli(k[5], 0.5, (n_self, 1)), 1.0, levels[:n_self])
    r = 2.0 ** -jax.random.uniform(k[6], (n_self, 1), maxval=np.log2(max_steps))
    x = interpolate(x0[:n_self], noise[:n_self], lv)
    metrics["self_loss"] = distill.shortcut_self_loss(student_fn(rows(0, n_self)), x, lv, lv * r)
    loss = loss + metrics["self_loss"]
  return loss, metrics


def ode_loss(student, batch, rng, *, levels: tuple[float, ...], causal_chunk: int = 0):
  """ODE-pair regression: batch 'trajectory' [B, K + 1, T, h, w, C] (the teacher's ODE at the
  K student levels, then its clean end) and captions. Each clip (each chunk, under a block-causal
  mask, with causal_chunk > 0) starts from one of the K points; with chunks a point may also be
  the clean end (level 0, context for the later chunks, unscored as x - 0 v = x)."""
  traj = batch["trajectory"]
  b, points, t = traj.shape[:3]
  levels = jnp.asarray(levels + (0.0,), jnp.float32)  # [K + 1]
  if causal_chunk:
    of_frame = chunk_ids(t, causal_chunk)
    index = jax.random.randint(rng, (b, int(of_frame[-1]) + 1), 0, points)[:, of_frame]
    temporal_mask = jnp.asarray(block_causal_mask(t, causal_chunk))
  else:
    index = jnp.broadcast_to(jax.random.randint(rng, (b, 1), 0, points - 1), (b, t))
    temporal_mask = None
  x = jnp.take_along_axis(traj, index[:, None, :, None, None, None], axis=1)[:, 0]
  lv = levels[index]
  v = student(x, lv, batch["ids"], batch["mask"], temporal_mask, 0)
  loss = distill.ode_regression_loss(v, x, lv, traj[:, -1])
  return loss, dict(ode_loss=loss, mean_level=lv.mean())


def few_step_rollout(student, x1, schedule: jax.Array, exit_step, rng, velocity_args):
  """The few-step student's own sample from noise x1 [B, T, ...] with the consistency sampler,
  stopped at step `exit_step` (traced) and returning that step's clean estimate: the steps
  before it carry no gradient, the exit step does (DMD2's backward simulation)."""
  frozen = _stopped(student)

  def body(i, x):
    t = jnp.full(x.shape[:2], schedule[i])
    x0 = distill.x0_of(x, frozen(x, t, *velocity_args), t)
    return distill.renoise_to(x0, jnp.full(x.shape[:2], schedule[i + 1]),
                              jax.random.normal(jax.random.fold_in(rng, i), x.shape))

  x = jax.lax.fori_loop(0, exit_step, body, x1)
  t = jnp.full(x.shape[:2], schedule[exit_step])
  return distill.x0_of(x, student(x, t, *velocity_args), t)


def self_forcing_rollout(student, x1, schedule: jax.Array, rng, *, ids, mask, chunk: int,
                         context_level: float, window: int, exit_steps=None):
  """The autoregressive student's own clip: chunk after chunk (`chunk_bounds` of x1's T frames)
  from noise x1 [B, T, h, w, C], each through its few steps with the KV cache of the chunks
  before (a ring buffer of `window` frames, as at sampling), exiting at a random step per chunk
  (exit_steps [chunks]: given ones) with gradient through that step only; each finished chunk's
  clean estimate (stopped, re-noised to `context_level`) is cached for the chunks after it.
  Returns the clean clip [B, T, ...]. Exiting at the last step everywhere, it is the streaming
  sampler (`vdm.generate.streaming`) with the 'consistency' sampler, noise draw for noise draw."""
  dit, frozen = student.dit, _stopped(student).dit
  text, frozen_text = student.text(ids, mask), jax.lax.stop_gradient(student.text(ids, mask))
  b, frames, h, w, _ = x1.shape
  tokens = (h // dit.patch) * (w // dit.patch)
  cache = empty_cache(depth=dit.depth, batch_tokens=b * tokens, slots=window,
                      heads=dit.width // dit.head_dim, head_dim=dit.head_dim)
  steps = schedule.shape[0]
  bounds = chunk_bounds(frames, chunk)
  if exit_steps is None:
    exit_steps = jnp.stack([jax.random.randint(jax.random.fold_in(rng, (1 << 20) + c), (), 0,
                                               steps) for c in range(len(bounds))])

  def one_chunk(cache, c, start, x, exit_step):
    """Chunk c (traced) of noise x from frame `start` (traced): (new cache, clean chunk)."""
    key = jax.random.fold_in(rng, c)

    def body(i, x):
      t = jnp.full(x.shape[:2], schedule[i])
      v, _ = frozen.forward_cached(x, t, frozen_text, mask, cache, start)
      return distill.renoise_to(distill.x0_of(x, v, t), jnp.full(x.shape[:2], schedule[i + 1]),
                                jax.random.normal(jax.random.fold_in(key, i), x.shape))

    x = jax.lax.fori_loop(0, exit_step, body, x)
    t = jnp.full(x.shape[:2], schedule[exit_step])
    v, _ = dit.forward_cached(x, t, text, mask, cache, start)
    x0 = distill.x0_of(x, v, t)
    context = jax.lax.stop_gradient(x0)
    if context_level > 0:
      fresh = jax.random.normal(jax.random.fold_in(key, 1 << 21), x.shape)
      context = interpolate(context, fresh, jnp.full(x.shape[:2], context_level))
    _, (k, v) = frozen.forward_cached(context, jnp.full(x.shape[:2], context_level),
                                      frozen_text, mask, cache, start)
    return write_frames(cache, k, v, start), x0

  # Chunks of one size run as one jax.lax.scan (the program does not grow with the rollout);
  # a first chunk of another size (frame 0 alone) runs before it.
  out, first = [], 0
  if bounds[0][1] - bounds[0][0] != bounds[-1][1] - bounds[-1][0]:
    cache, x0 = one_chunk(cache, 0, jnp.int32(0), x1[:, :bounds[0][1]], exit_steps[0])
    out.append(x0)
    first = 1
  rest = bounds[first:]
  if rest:
    size = rest[0][1] - rest[0][0]
    starts = jnp.asarray([a for a, _ in rest], jnp.int32)
    noise = x1[:, rest[0][0]:].reshape((b, len(rest), size) + x1.shape[2:]).swapaxes(0, 1)

    def scan_body(cache, inputs):
      c, start, x, exit_step = inputs
      return one_chunk(cache, c, start, x, exit_step)

    _, chunks = jax.lax.scan(scan_body, cache, (jnp.arange(first, len(bounds)), starts, noise,
                                                exit_steps[first:]))
    out.append(chunks.swapaxes(0, 1).reshape((b, len(rest) * size) + x1.shape[2:]))
  return jnp.concatenate(out, axis=1)


def dmd_generator_loss(student, batch, rng, critic, active, *, teacher_def, scale: float,
                       schedule: tuple[float, ...], levels: tuple[float, float], shape,
                       self_forcing=None):
  """DMD for the generator: its sample (`few_step_rollout`, or with `self_forcing` a dict of
  `self_forcing_rollout` options plus 'frames' (the scored window) the autoregressive rollout),
  noised at a level in `levels`, scored by the guided teacher (real) and the critic (fake).
  The sample (stopped) and its window's position go to the critic's loss."""
  del active  # the critic trains from the first step
  k = jax.random.split(rng, 5)
  b = batch["ids"].shape[0]
  sched = jnp.asarray(schedule, jnp.float32)
  if self_forcing is None:
    x1 = jax.random.normal(k[0], (b,) + tuple(shape))
    exit_step = jax.random.randint(k[4], (), 0, len(schedule))
    x0 = few_step_rollout(student, x1, sched, exit_step, k[1],
                          (batch["ids"], batch["mask"]))
    offset = jnp.int32(0)
  else:
    options = dict(self_forcing)
    frames = options.pop("frames")
    x1 = jax.random.normal(k[0], (b,) + tuple(shape))
    rolled = self_forcing_rollout(student, x1, sched, k[1], ids=batch["ids"], mask=batch["mask"],
                                  **options)
    offset = jax.random.randint(k[4], (), 0, shape[0] - frames + 1)
    x0 = jax.lax.dynamic_slice_in_dim(rolled, offset, frames, axis=1)
  t = jnp.broadcast_to(jax.random.uniform(k[2], (b, 1), minval=levels[0], maxval=levels[1]),
                       x0.shape[:2])
  noise = jax.random.normal(k[3], x0.shape)
  real = guided_fn(_teacher(teacher_def, batch), batch, scale, offset=offset)
  fake = lambda x, t: critic(x, t, batch["ids"], batch["mask"], None, offset)  # noqa: E731
  x0_real, x0_fake = distill.dmd_scores(real, fake, x0, noise, t)
  loss = distill.dmd_loss(x0, x0_real, x0_fake)
  return loss, dict(dmd_loss=loss, score_gap=jnp.mean(jnp.abs(x0_fake - x0_real)),
                    critic_input=(x0, offset))


def fake_score_loss(critic, model, batch, rng, generated, *, kind: str):
  """The critic (fake score): flow matching on the generator's samples at training levels
  drawn as the teacher's (`kind`), given the window offset the generator's loss used."""
  del model
  x0, offset = generated
  k = jax.random.split(jax.random.fold_in(rng, 7), 2)
  t = jnp.broadcast_to(sample_timesteps(k[0], (x0.shape[0], 1), kind=kind), x0.shape[:2])
  fake = lambda x, t: critic(x, t, batch["ids"], batch["mask"], None, offset)  # noqa: E731
  loss = distill.fake_score_loss(fake, x0, jax.random.normal(k[1], x0.shape), t)
  return loss, dict(fake_loss=loss)


# ----------------------------------------------------------------------------- ODE pairs

def ode_pairs_path(config, workdir: str) -> str:
  """Where the teacher's trajectories go: in `data_dir` (shared by the students that use the
  same ones, e.g. ode_init and ode_init_ar) or the workdir, named by what they depend on."""
  key = json.dumps([os.path.abspath(config.teacher), config.seed, config.guidance,
                    config.schedule.to_dict(), config.ode.pairs, config.ode.teacher_steps])
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  return os.path.join(config.data_dir or workdir, f"ode_pairs_{digest}.npz")


def ode_pairs(config, teacher_config, tokenizer, teacher, shape, workdir: str) -> dict:
  """The teacher's ODE trajectories (generated once, `ode_pairs_path`): 'trajectory' float32
  [N, K + 1, T, h, w, C] at the student's K levels and the clean end, 'ids' [N, L], 'mask'
  [N, L], for N = ode.pairs training captions, guided at `guidance`, ode.teacher_steps Euler
  steps on the student's shifted grid (so its levels lie on the teacher's)."""
  path = ode_pairs_path(config, workdir)
  if os.path.exists(path):
    with np.load(path) as data:
      return {k: data[k] for k in ("trajectory", "ids", "mask")}
  o = config.ode
  captions = training_captions(teacher_config, _caption_dataset(config, teacher_config, workdir),
                               num=o.pairs)[:o.pairs]
  grid = time_grid(o.teacher_steps, shift=config.schedule.shift)
  every = o.teacher_steps // config.schedule.steps
  graphdef, state = nnx.split(teacher)

  @jax.jit
  def trajectories(state, noise, ids, mask, empty_ids, empty_mask):
    batch = dict(ids=ids, mask=mask, empty_ids=empty_ids, empty_mask=empty_mask)
    velocity = guided_fn(nnx.merge(graphdef, state), batch, config.guidance)
    return distill.ode_trajectory(velocity, noise, grid, every).swapaxes(0, 1)

  prepare = caption_batch_fn(tokenizer, teacher_config.text.max_length)
  out = dict(trajectory=[], ids=[], mask=[])
  key = jax.random.key(config.seed)
  for i, start in enumerate(range(0, len(captions), o.batch_size)):
    batch = prepare(dict(caption=captions[start:start + o.batch_size]))
    noise = jax.random.normal(jax.random.fold_in(key, i), (len(batch["ids"]),) + tuple(shape))
    out["trajectory"].append(np.asarray(trajectories(state, noise, *(
        batch[k] for k in ("ids", "mask", "empty_ids", "empty_mask")))))
    out["ids"].append(batch["ids"])
    out["mask"].append(batch["mask"])
    print(f"[ode_init] teacher trajectories {start + len(batch['ids'])}/{len(captions)}",
          flush=True)
  arrays = {k: np.concatenate(v) for k, v in out.items()}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path + ".tmp.npz", **arrays)
  os.replace(path + ".tmp.npz", path)  # a killed run leaves no half file behind
  return arrays


def _caption_dataset(config, teacher_config, workdir: str):
  """The teacher's dataset when its captions are not a grammar (None otherwise)."""
  if kinds.DATA_KINDS[teacher_config.data.kind].caption_corpus is not None:
    return None
  return _dataset(config, teacher_config, workdir)


def _dataset(config, teacher_config, workdir: str):
  return kinds.build(teacher_config.data, config.data_dir or os.path.join(workdir, "data"))


# ----------------------------------------------------------------------------- the task

def check_distill_workdir(config, workdir: str) -> None:
  """A workdir belongs to one distillation: refuse to resume it with another (the training
  length and logging may change); record the config in WORKDIR/config.json."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      old = config_from_json(f.read())
    differ = [f"{name}: {get(old, name)!r} -> {get(config, name)!r}"
              for name, _ in walk(SCHEMA)
              if name not in _RESUMABLE and get(old, name) != get(config, name)]
    if differ:
      raise ValueError(f"workdir {workdir} was trained with a different config; fields that "
                       f"differ: {differ}. Use a new --workdir.")
  os.makedirs(workdir, exist_ok=True)
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2))
  os.replace(path + ".tmp", path)


def run_distill_training(config, workdir: str, *, until: str = "export") -> str:
  """Trains the student of `config.teacher` with `config.recipe` through the one loop and
  exports WORKDIR/model; returns its path. One stage, so `until` does not apply."""
  del until
  if config.init_from and not is_model_dir(config.init_from):
    raise ValueError(f"config field init_from={config.init_from!r} is invalid: allowed '' or a "
                     "model directory written by `vdm train` (train the student it names first: "
                     "configs/fast.py)")
  check_distill_workdir(config, workdir)
  teacher_config, tokenizer, vae, teacher, stats = load_model_dir(config.teacher)
  if teacher_config.dit.guidance_input or teacher_config.dit.step_input:
    raise ValueError(f"teacher={config.teacher!r} is itself a student with extra inputs; "
                     "distil from a plain model directory")
  scfg = student_config(teacher_config, config)
  student = build_denoiser(scfg, tokenizer.vocab_size, config.seed)
  new_inputs = start_from(load_model_dir(config.init_from)[3] if config.init_from else teacher,
                           student)
  print(f"[{config.recipe}] student of {config.teacher}"
        + (f" from {config.init_from}" if config.init_from else "")
        + (f"; new inputs: {sorted({n.split('.')[1] for n in new_inputs})}" if new_inputs else ""))
  shape = latent_shape(teacher_config, vae)
  teacher_def, teacher_state = nnx.split(teacher)
  captions = caption_batch_fn(tokenizer, teacher_config.text.max_length)
  recipe, t = config.recipe, config.train
  diffusion, tp = teacher_config.diffusion, teacher_config.dit.temporal_patch
  critic = None
  if recipe in ("guidance", "shortcut", "finetune"):
    encode = jax.jit(lambda video: (vae.encode(normalize_pixels(video))[0] - stats["mean"])
                     / stats["std"])
    clips = denoiser_batch_fn(teacher_config, encode, tokenizer,
                              temporal_stride=vae.temporal_downsample,
                              spatial_stride=vae.spatial_downsample)
    loader = make_loader(_dataset(config, teacher_config, workdir), "train",
                         batch_size=t.batch_size, seed=config.seed)
    prepare = clips
    if recipe == "finetune":
      loss = functools.partial(denoiser_loss, cfg=scfg.diffusion, temporal_patch=tp)
    elif recipe == "guidance":
      loss = functools.partial(guidance_loss, teacher_def=teacher_def, diffusion=diffusion,
                               temporal_patch=tp, scales=(config.guidance_min, config.guidance))
    else:
      loss = functools.partial(shortcut_loss, teacher_def=teacher_def, diffusion=diffusion,
                               temporal_patch=tp, scale=config.guidance,
                               self_fraction=config.shortcut.self_fraction,
                               max_steps=config.shortcut.max_steps)
  elif recipe == "ode_init":
    arrays = ode_pairs(config, teacher_config, tokenizer, teacher, shape, workdir)
    loader = make_array_loader(arrays, name="ode_pairs", batch_size=t.batch_size,
                               seed=config.seed)
    prepare = lambda batch: batch  # noqa: E731
    loss = functools.partial(ode_loss, levels=student_schedule(config),
                             causal_chunk=config.self_forcing.chunk if config.ode.causal else 0)
  else:  # dmd, self_forcing: prompts only; the generator makes its own samples
    loader = make_caption_loader(training_captions(
        teacher_config, _caption_dataset(config, teacher_config, workdir)),
        batch_size=t.batch_size, seed=config.seed)
    prepare = captions
    self_forcing = None
    if recipe == "self_forcing":
      sf = config.self_forcing
      frames = shape[0]
      rolled = 1 + (frames - 1) * sf.rollout
      _check_chunk(sf.chunk, frames, rolled)
      self_forcing = dict(chunk=sf.chunk, context_level=float(sf.context_noise),
                          window=max(1, frames - sf.chunk), frames=frames)
      shape = (rolled,) + tuple(shape[1:])
    loss = functools.partial(dmd_generator_loss, teacher_def=teacher_def, scale=config.guidance,
                             schedule=student_schedule(config),
                             levels=(config.dmd.min_level, config.dmd.max_level), shape=shape,
                             self_forcing=self_forcing)
    fake = build_denoiser(teacher_config, tokenizer.vocab_size, config.seed + 1)
    start_from(teacher, fake)
    critic = Critic(fake, functools.partial(fake_score_loss, kind=diffusion.timestep_sampling),
                    optax.chain(optax.clip_by_global_norm(t.grad_clip),
                                optax.adamw(config.dmd.fake_learning_rate, b1=0.0, b2=0.99,
                                            weight_decay=t.weight_decay)))
  student = train(student, loss, loader, t, os.path.join(workdir, recipe), seed=config.seed,
                  prepare_batch=prepare, desc=recipe, critic=critic,
                  constants=dict(teacher=teacher_state))
  model_dir = os.path.join(workdir, "model")
  shutil.rmtree(model_dir, ignore_errors=True)  # derived: always rewritten whole
  save_model_dir(model_dir, config=scfg, tokenizer=tokenizer, vae=vae, denoiser=student,
                 latent_stats=stats)
  write_json(os.path.join(model_dir, "distill.json"), json.loads(config.to_json()))
  write_provenance(model_dir, config.seed)
  return model_dir


def _check_chunk(chunk: int, frames: int, rolled: int) -> None:
  allowed = sorted(set(allowed_chunks(frames)) & set(allowed_chunks(rolled)))
  if chunk not in allowed or chunk >= frames:
    raise ValueError(f"config field self_forcing.chunk={chunk} is invalid: allowed "
                     f"{[k for k in allowed if k < frames]} (chunks of the teacher's {frames} "
                     f"latent frames and of the {rolled} rolled out)")
