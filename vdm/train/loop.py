"""The one training loop: VAE and denoiser train through it with different loss functions.

State is a plain pytree (step, params, optimizer state, EMA params), checkpointed by orbax together
with the grain iterator's position, so a resumed run continues exactly where it stopped. The step
RNG is `fold_in(seed, step)`, which needs no saving and makes resumption deterministic.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import nnx
from grain import python as grain
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


def make_optimizer(cfg) -> optax.GradientTransformation:
  """AdamW with linear warm-up, cosine decay and global-norm clipping, from a stage config."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.steps, cfg.warmup_steps + 1), end_value=cfg.learning_rate * 0.1)
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                     optax.adamw(schedule, b2=0.99, weight_decay=cfg.weight_decay))


def ema_update(ema, params, decay):
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def _make_train_step(graphdef, rest, tx, loss_fn: LossFn, ema_decay: float, seed: int):
  base_rng = jax.random.key(seed)

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state["step"])

    def loss_of(params):
      return loss_fn(nnx.merge(graphdef, params, rest), batch, rng)

    (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    # Warm the EMA up: averaging over the random init early on would only add noise.
    decay = jnp.minimum(ema_decay, (1.0 + state["step"]) / (10.0 + state["step"]))
    new_state = dict(step=state["step"] + 1, params=params, opt_state=opt_state,
                     ema=ema_update(state["ema"], params, decay))
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return new_state, metrics

  return jax.jit(train_step, donate_argnums=0)


def train(model: nnx.Module, loss_fn: LossFn, loader: grain.DataLoader, cfg, workdir: str, *,
          seed: int, prepare_batch: Callable[[dict], dict] = lambda b: b,
          desc: str = "train") -> nnx.Module:
  """Trains `model` for `cfg.steps` steps, resuming from the latest checkpoint in `workdir`.

  Args:
    model: an NNX module; its Params are trained, everything else is left as is.
    loss_fn: (model, batch, rng) -> (scalar loss, metrics dict); traced under jit.
    loader: grain DataLoader whose iterator yields host batches (numpy dicts).
    cfg: stage config with steps, learning_rate, warmup_steps, weight_decay, grad_clip, ema_decay,
      log_every, checkpoint_every.
    workdir: where `checkpoints/`, `tensorboard/` and `metrics.jsonl` go.
    prepare_batch: host-side transform of each batch (e.g. tokenizing captions).
  Returns:
    the model with its parameters replaced by the EMA parameters.
  """
  os.makedirs(workdir, exist_ok=True)
  # Non-Param state (none in the shipped models) rides along unchanged.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = make_optimizer(cfg)
  state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               ema=jax.tree.map(jnp.copy, params))
  iterator = iter(loader)
  manager = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  if manager.latest_step() is not None:
    step = manager.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data=grain.PyGrainCheckpointRestore(iterator)))
    state = restored["state"]
    print(f"[{desc}] resumed from step {step} in {workdir}")

  train_step = _make_train_step(graphdef, rest, tx, loss_fn, cfg.ema_decay, seed)
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
  start = int(state["step"])
  bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc,
             disable=os.environ.get("VDM_NO_PROGRESS") == "1")
  t0 = time.time()
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as log:
    for step in bar:
      state, metrics = train_step(state, prepare_batch(next(iterator)))
      done = step + 1
      if done % cfg.log_every == 0 or done == cfg.steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        for name, value in metrics.items():
          writer.add_scalar(f"{desc}/{name}", value, done)
        log.write(json.dumps(dict(step=done, seconds=time.time() - t0, **metrics)) + "\n")
        log.flush()
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
      if done % cfg.checkpoint_every == 0 or done == cfg.steps:
        manager.save(done, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.PyGrainCheckpointSave(iterator)))
  manager.wait_until_finished()
  writer.close()
  return nnx.merge(graphdef, state["ema"], rest)
