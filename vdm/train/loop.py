"""The one training loop: VAE, text-encoder pretraining and denoiser train through it with
different loss functions.

State is a plain pytree (step, params, optimizer state, EMA params), checkpointed by orbax together
with the grain iterator's position, so a resumed run continues exactly where it stopped. The step
RNG is `fold_in(seed, step)`, which needs no saving and makes resumption deterministic.

Faults (see `vdm.train.faults`): SIGTERM/SIGINT checkpoint the current step and stop (`Preempted`);
a step whose loss or gradients are not finite is skipped inside the jitted step, so it never
reaches params, optimizer moments, EMA or a checkpoint, and `nan_policy` says whether to count it
('skip', up to `max_nan_skips`) or stop ('stop'); unreadable or partial checkpoints are reported
and skipped on restore; metrics logged after the restored step are dropped, so a resumed run's
log equals an uninterrupted run's.
"""
from __future__ import annotations

import dataclasses
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

from vdm.pytree import leaf_names
from vdm.train import faults

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass
class Critic:
  """A second network trained against the model in the same step (a GAN discriminator).

  With a critic, the model's loss is called as `loss_fn(model, batch, rng, critic, active)` and
  the critic's as `loss_fn(critic, model, batch, rng)` (gradients w.r.t. the critic only), both
  from the parameters before this step's updates. Before step `start` (`active` False) the
  critic's update is not applied; the model's loss is expected to weight its term by `active`.
  A model loss may put 'critic_input' in its metrics (any pytree, e.g. the samples a generator
  made, gradients stopped): it is taken out of the metrics and given to the critic's loss as a
  fifth argument, so what both losses need is computed once per step.
  """
  module: nnx.Module
  loss_fn: Callable[[nnx.Module, nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]
  tx: optax.GradientTransformation
  start: int = 0


def make_optimizer(cfg, frozen: tuple[str, ...] = ()) -> optax.GradientTransformation:
  """AdamW with linear warm-up, cosine decay and global-norm clipping, from a stage config.

  Parameters whose dotted name starts with one of `frozen` (e.g. ('text',): the text encoder)
  get no update at all — no gradient step and no weight decay — and do not count in the clipping.
  """
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.steps, cfg.warmup_steps + 1), end_value=cfg.learning_rate * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                   optax.adamw(schedule, b2=0.99, weight_decay=cfg.weight_decay))
  frozen = tuple(frozen)
  if not frozen:
    return tx

  def labels(params):
    names = iter(leaf_names(params))
    return jax.tree.map(lambda _: "frozen" if next(names).startswith(frozen) else "train",
                        params)

  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def ema_update(ema, params, decay):
  # e + (1 - d)(p - e) rather than d e + (1 - d) p: a parameter that does not move (frozen)
  # keeps its EMA bit for bit.
  return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), ema, params)


def _make_train_step(graphdef, rest, tx, loss_fn: LossFn, ema_decay: float, seed: int,
                     critic: Critic | None = None, critic_def=None):
  """The jitted step: (state, batch) -> (state, metrics, finite, per-leaf gradient finiteness)."""
  base_rng = jax.random.key(seed)

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state["step"])
    if critic is None:
      extra = ()
    else:
      active = state["step"] >= critic.start
      extra = (nnx.merge(critic_def, state["critic_params"]), active)

    def loss_of(params):
      return loss_fn(nnx.merge(graphdef, params, rest), batch, rng, *extra)

    (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
    shared = (jax.lax.stop_gradient(metrics.pop("critic_input")),) if "critic_input" in metrics \
        else ()
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    # Warm the EMA up: averaging over the random init early on would only add noise.
    decay = jnp.minimum(ema_decay, (1.0 + state["step"]) / (10.0 + state["step"]))
    step = state["step"] + 1
    updated = dict(step=step, params=params, opt_state=opt_state,
                   ema=ema_update(state["ema"], params, decay))
    grads_finite = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    finite = jnp.isfinite(loss) & jnp.all(grads_finite)
    if critic is not None:
      model = nnx.merge(graphdef, state["params"], rest)

      def critic_loss_of(critic_params):
        return critic.loss_fn(nnx.merge(critic_def, critic_params), model, batch, rng, *shared)

      (c_loss, c_metrics), c_grads = jax.value_and_grad(critic_loss_of, has_aux=True)(
          state["critic_params"])
      c_updates, c_opt = critic.tx.update(c_grads, state["critic_opt_state"],
                                          state["critic_params"])
      c_params = optax.apply_updates(state["critic_params"], c_updates)
      # Before `start` the critic stays at its init, as if it did not exist yet.
      updated["critic_params"], updated["critic_opt_state"] = jax.tree.map(
          lambda new, old: jnp.where(active, new, old), (c_params, c_opt),
          (state["critic_params"], state["critic_opt_state"]))
      c_finite = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(c_grads)])
      grads_finite = jnp.concatenate([grads_finite, c_finite])
      finite = finite & jnp.isfinite(c_loss) & jnp.all(c_finite)
      metrics = dict(metrics, **c_metrics)
    # A non-finite step keeps the old params, Adam moments and EMA (one NaN would poison the
    # moments for good), but the step still advances: the next step sees the next batch and RNG,
    # exactly as in a run that never met the bad batch's update.
    kept = dict(state, step=step)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, kept)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return new_state, metrics, finite, grads_finite

  return jax.jit(train_step, donate_argnums=0)


def _restore_latest(manager, state, iterator, ckpt_dir: str, desc: str):
  """Restores the newest readable checkpoint; returns (state, meta dict, step or None).

  A step that fails to restore (truncated files, a write that died after the rename) is skipped
  with a message and the next older one is tried; once an older one restores, the unreadable
  newer ones are moved aside (never deleted) so their steps can be saved again. If no step
  restores, the cause is more likely a changed model than damage, so it raises and moves nothing.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  failed = []
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(ckpt_dir, str(step))
    items = dict(state=ocp.args.StandardRestore(abstract),
                 data=grain.PyGrainCheckpointRestore(iterator))
    if os.path.isdir(os.path.join(step_dir, "meta")):  # checkpoints before faults.py lack it
      items["meta"] = ocp.args.JsonRestore()
    try:
      restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      faults.report(f"[{desc}] checkpoint step {step} is unreadable ({type(e).__name__}: "
                    f"{str(e)[:300]}); trying an older one")
      failed.append((step, step_dir, e))
      continue
    for bad_step, bad_dir, _ in failed:
      faults.report(f"[{desc}] moved unreadable checkpoint step {bad_step} to "
                    f"{faults.quarantine(bad_dir)}")
    if failed:
      manager.reload()
    return restored["state"], dict(restored.get("meta") or {}), step
  if failed:
    raise ValueError(f"[{desc}] no checkpoint in {ckpt_dir} restores (steps "
                     f"{[s for s, _, _ in failed]}); if the model config changed, use a new "
                     f"workdir. First error: {failed[0][2]}")
  return state, {}, None


def train(model: nnx.Module, loss_fn: LossFn, loader: grain.DataLoader, cfg, workdir: str, *,
          seed: int, prepare_batch: Callable[[dict], dict] = lambda b: b,
          desc: str = "train", critic: Critic | None = None,
          frozen: tuple[str, ...] = (),
          evaluate: Callable[[nnx.Module], dict] | None = None) -> nnx.Module:
  """Trains `model` for `cfg.steps` steps, resuming from the latest checkpoint in `workdir`.

  Args:
    model: an NNX module; its Params are trained, everything else is left as is.
    loss_fn: (model, batch, rng) -> (scalar loss, metrics dict); traced under jit.
    loader: grain DataLoader whose iterator yields host batches (numpy dicts).
    cfg: stage config with steps, learning_rate, warmup_steps, weight_decay, grad_clip, ema_decay,
      log_every, checkpoint_every, nan_policy ('skip' | 'stop') and max_nan_skips (a stage
      section of the schema, vdm/config/t2v.py `stage`).
    workdir: where `checkpoints/`, `tensorboard/` and `metrics.jsonl` go.
    prepare_batch: host-side transform of each batch (e.g. tokenizing captions).
    critic: an optional adversary trained alongside (see `Critic`); its parameters and optimizer
      state are checkpointed with the model's. None leaves the step exactly as without one.
    frozen: prefixes of parameter names that get no update (`make_optimizer`).
    evaluate: (EMA model) -> dict of scalars, run every `cfg.eval_every` steps when the stage
      has that field > 0 (held-out scores during training); lines go to `eval.jsonl` with the
      training seconds so far (evaluation time excluded) and to TensorBoard.
  Returns:
    the model with its parameters replaced by the EMA parameters.
  Raises:
    faults.Preempted: on SIGTERM/SIGINT, after checkpointing the current step.
    faults.NonFiniteError: a non-finite step under nan_policy='stop', or more than max_nan_skips.
  """
  policy = cfg.nan_policy
  max_skips = cfg.max_nan_skips
  if policy not in faults.NAN_POLICIES:
    raise ValueError(f"nan_policy {policy!r}: allowed {list(faults.NAN_POLICIES)}")
  os.makedirs(workdir, exist_ok=True)
  # Non-Param state (none in the shipped models) rides along unchanged.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  names = leaf_names(params)
  tx = make_optimizer(cfg, frozen)
  state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               ema=jax.tree.map(jnp.copy, params))
  critic_def = None
  if critic is not None:
    critic_def, critic_params = nnx.split(critic.module)
    state.update(critic_params=critic_params, critic_opt_state=critic.tx.init(critic_params))
    names += ["critic." + n for n in leaf_names(critic_params)]
  iterator = iter(loader)
  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  for path in faults.partial_checkpoints(ckpt_dir):
    faults.report(f"[{desc}] skipping partial checkpoint {path} (an interrupted or failed save); "
                  "restoring the newest complete one")
  # cleanup_tmp_directories: orbax reuses the '<step>.orbax-checkpoint-tmp' name, so a leftover
  # would only be deleted at that step's next save; remove them now instead.
  manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
      max_to_keep=2, create=True, cleanup_tmp_directories=True))
  state, meta, last_saved = _restore_latest(manager, state, iterator, ckpt_dir, desc)
  skips = int(meta.get("nan_skips", 0))
  start = int(state["step"])
  if last_saved is not None:
    print(f"[{desc}] resumed from step {last_saved} in {workdir}")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  dropped = faults.truncate_metrics(metrics_path, start)
  if dropped:
    faults.report(f"[{desc}] dropped {dropped} metrics line(s) logged after step {start}")

  def save(step: int) -> None:
    nonlocal last_saved
    if last_saved is not None:
      faults.check_free_disk(ckpt_dir, os.path.join(ckpt_dir, str(last_saved)))
    try:
      manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=grain.PyGrainCheckpointSave(iterator),
          meta=ocp.args.JsonSave(dict(nan_skips=skips, step=step))))
    except Exception as e:
      faults.report(f"[{desc}] saving the checkpoint at step {step} failed ({e}); the previous "
                    f"checkpoint (step {last_saved}) is intact")
      raise
    last_saved = step

  def finish_saves() -> None:
    try:
      manager.wait_until_finished()
    except Exception as e:
      faults.report(f"[{desc}] a checkpoint write failed ({e}); the newest complete checkpoint "
                    "is kept and will be restored")
      raise

  train_step = _make_train_step(graphdef, rest, tx, loss_fn, cfg.ema_decay, seed, critic,
                                critic_def)
  # purge_step: TensorBoard drops events a killed run logged after the restored step.
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start + 1)
  bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc,
             disable=os.environ.get("VDM_NO_PROGRESS") == "1")
  eval_every = cfg.get("eval_every", 0) if evaluate is not None else 0
  eval_path = os.path.join(workdir, "eval.jsonl")
  if eval_every:
    faults.truncate_metrics(eval_path, start)
  eval_seconds = 0.0
  t0 = time.time()
  with faults.PreemptionGuard() as guard, open(metrics_path, "a") as log:
    for step in bar:
      state, metrics, finite, grads_finite = train_step(state, prepare_batch(next(iterator)))
      done = step + 1
      # One scalar read per step, so 'stop' halts at the exact step and the skip count a
      # checkpoint stores is exact; the skip itself already happened inside the step.
      if not bool(finite):
        skips += 1
        loss = float(metrics["loss"])
        if policy == "stop" or skips > max_skips:
          bad = [n for n, ok in zip(names, jax.device_get(grads_finite)) if not ok]
          finish_saves()
          writer.close()
          raise faults.NonFiniteError(faults.nonfinite_message(
              desc, done, policy, loss, bad, skips, max_skips, last_saved))
        faults.report(f"[{desc}] step {done}: non-finite loss or gradients (loss={loss}); "
                      f"update skipped ({skips}/{max_skips} allowed)")
      if done % cfg.log_every == 0 or done == cfg.steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        metrics["nan_skips"] = skips
        for name, value in metrics.items():
          writer.add_scalar(f"{desc}/{name}", value, done)
        log.write(json.dumps(dict(step=done, seconds=time.time() - t0, **metrics)) + "\n")
        log.flush()
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
      if eval_every and (done % eval_every == 0 or done == cfg.steps):
        t_eval = time.time()
        scores = evaluate(nnx.merge(graphdef, state["ema"], rest))
        eval_seconds += time.time() - t_eval
        for name, value in scores.items():
          writer.add_scalar(f"{desc}/eval/{name}", value, done)
        with open(eval_path, "a") as f:
          f.write(json.dumps(dict(step=done, train_seconds=time.time() - t0 - eval_seconds,
                                  **scores)) + "\n")
      if done % cfg.checkpoint_every == 0 or done == cfg.steps:
        save(done)
      if guard.signum is not None:
        if last_saved != done:
          save(done)
        finish_saves()
        writer.close()
        error = faults.Preempted(guard.signum, done, ckpt_dir)
        faults.report(f"[{desc}] {error}")
        raise error
  finish_saves()
  writer.close()
  return nnx.merge(graphdef, state["ema"], rest)
