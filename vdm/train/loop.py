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

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import nnx
from grain import python as grain
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from vdm.data.loader import skip_records
from vdm.parallel import distributed
from vdm.parallel.placement import Placement
from vdm.pytree import leaf_names
from vdm.train import faults
from vdm.train.microbatch import accumulated_value_and_grad, compute_copy

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]
ModelOrInit = "nnx.Module | Callable[[], nnx.Module]"


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
                     critic: Critic | None = None, critic_def=None, *, batch_size: int = 0,
                     accumulate: int = 1, precision: str = "float32", trainable=None):
  """The step to jit: (state, batch) -> (state, metrics, finite, per-leaf gradient finiteness).

  The model's gradients are averaged over `accumulate` micro-batches of the `batch_size` rows
  and computed with the parameters in `precision` (vdm.train.microbatch); the critic's step sees
  the whole batch in float32. trainable: a tree of bools like the params (None: all); the others
  are held by stop_gradient, so no gradient is computed for them at all (their gradient is 0):
  a LoRA fine-tune computes no gradient of the base weights.
  """
  base_rng = jax.random.key(seed)

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state["step"])
    if critic is None:
      extra = ()
    else:
      active = state["step"] >= critic.start
      extra = (nnx.merge(critic_def, state["critic_params"]), active)

    def loss_of(params, batch, rng):
      if trainable is not None:
        params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                              trainable)
      return loss_fn(nnx.merge(graphdef, compute_copy(params, precision), rest), batch, rng,
                     *extra)

    (loss, metrics), grads = accumulated_value_and_grad(
        loss_of, state["params"], batch, rng, accumulate=accumulate, batch_size=batch_size)
    # A critic's loss may read what the model's loss produced (DMD's generated clips: one
    # micro-batch, vdm/config/distill.py refuses train.accumulate > 1).
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

  return train_step


def _jit_step(graphdef, rest, tx, loss_fn, cfg, seed, critic, critic_def, state_shardings,
              placement: Placement, trainable=None):
  """The train step jitted with the state's shardings in and out (donated), metrics replicated;
  the batch arrives already placed (`Placement.place_batch`)."""
  step_fn = _make_train_step(graphdef, rest, tx, loss_fn, cfg.ema_decay, seed, critic,
                             critic_def, batch_size=cfg.batch_size, accumulate=cfg.accumulate,
                             precision=cfg.precision, trainable=trainable)
  replicated = placement.replicated
  return jax.jit(step_fn, in_shardings=(state_shardings, None),
                 out_shardings=(state_shardings, replicated, replicated, replicated),
                 donate_argnums=0)


@dataclasses.dataclass
class StepPlan:
  """What `train` runs, before any of it runs: the state's structure and shardings (`abstract`,
  ShapeDtypeStructs), `init()` to create it in those shardings, and the jitted `step`
  (state, placed batch) -> (state, metrics, finite, per-leaf gradient finiteness)."""
  graphdef: Any
  rest: Any
  abstract: Any
  init: Callable[[], Any]
  step: Callable


def plan_step(model: ModelOrInit, loss_fn: LossFn, cfg, placement: Placement, *, seed: int,
              critic: Critic | None = None, frozen: tuple[str, ...] = ()) -> StepPlan:
  """The state and step of `train` for a model on a placement, nothing computed yet (also what
  `vdm plan` lowers and the scale benchmark times)."""
  tx = make_optimizer(cfg, frozen)
  graphdef, rest, abstract, init = _plan_state(model, tx, critic, placement)
  critic_def = None if critic is None else nnx.graphdef(critic.module)
  trainable = None
  if frozen:  # frozen parameters get no gradient at all, not just no update
    names_left = iter(leaf_names(abstract["params"]))
    trainable = jax.tree.map(lambda _: not next(names_left).startswith(tuple(frozen)),
                             abstract["params"])
  step = _jit_step(graphdef, rest, tx, loss_fn, cfg, seed, critic, critic_def,
                   jax.tree.map(lambda x: x.sharding, abstract), placement, trainable)
  return StepPlan(graphdef, rest, abstract, init, step)


def lower_train_step(model: ModelOrInit, loss_fn: LossFn, cfg, placement: Placement,
                     batch: dict, *, seed: int = 0, frozen: tuple[str, ...] = ()):
  """The step `train` runs, lowered for the abstract global `batch` (ShapeDtypeStructs, e.g.
  `Placement.abstract_batch`) without computing or allocating anything: (lowered, abstract
  state). `vdm plan` compiles it for XLA's memory analysis."""
  plan = plan_step(model, loss_fn, cfg, placement, seed=seed, frozen=frozen)
  with placement.activate():
    return plan.step.lower(plan.abstract, batch), plan.abstract


def _restore_latest(manager, abstract, iterator, ckpt_dir: str, desc: str, rows_per_step: int):
  """Restores the newest readable checkpoint; returns (state, meta dict, step), or
  (None, {}, None) when there is none.

  The state lands directly in the shardings of `abstract` (ShapeDtypeStructs of this run's
  mesh, whatever mesh wrote it). The data position is grain's own checkpoint when it was written by as many processes as
  there are now; otherwise (another process count) it is derived from the step: every step reads
  `rows_per_step` records of this process's rows.

  A step that fails to restore (truncated files, a write that died after the rename) is skipped
  with a message and the next older one is tried; once an older one restores, the unreadable
  newer ones are moved aside (never deleted) so their steps can be saved again. If no step
  restores, the cause is more likely a changed model than damage, so it raises and moves nothing.
  """
  failed = []
  for step in sorted(manager.all_steps(), reverse=True):
    step_dir = os.path.join(ckpt_dir, str(step))
    items = dict(state=ocp.args.StandardRestore(abstract))
    same_processes = os.path.exists(os.path.join(
        step_dir, "data", f"process_{jax.process_index()}-of-{jax.process_count()}.json"))
    if same_processes or not os.path.isdir(os.path.join(step_dir, "data")):
      items["data"] = grain.PyGrainCheckpointRestore(iterator)
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
    if "data" not in items:
      faults.report(f"[{desc}] checkpoint step {step} was written by another number of "
                    f"processes; reading on from record {step * rows_per_step} of this "
                    "process's rows")
      skip_records(iterator, step * rows_per_step)
    return restored["state"], dict(restored.get("meta") or {}), step
  if failed:
    raise ValueError(f"[{desc}] no checkpoint in {ckpt_dir} restores (steps "
                     f"{[s for s, _, _ in failed]}); if the model config changed, use a new "
                     f"workdir. First error: {failed[0][2]}")
  return None, {}, None


def _plan_state(model: ModelOrInit, tx, critic: Critic | None, placement: Placement):
  """(graphdef, rest, abstract state, init) for a model on the mesh, without computing it.

  The abstract state is ShapeDtypeStructs carrying each leaf's sharding (what a checkpoint is
  restored into); `init()` creates the state in those shardings under jit, so no process ever
  holds the whole model, and is only called when no checkpoint restores. A built module (small
  models, tests) is moved onto the mesh first; an init function is only traced until then. The
  optimizer moments keep the Params' logical names (optax maps over the Variables), so they are
  split exactly like the parameters.
  """
  def make_state(params, critic_params):
    state = dict(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                 ema=jax.tree.map(jnp.copy, params))
    if critic is not None:
      state.update(critic_params=critic_params,
                   critic_opt_state=critic.tx.init(critic_params))
    return state

  def with_shardings(abstract):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract, placement.shardings(abstract))

  critic_params = None
  if critic is not None:
    critic_params = placement.put(nnx.state(critic.module))
  if isinstance(model, nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = placement.put(params), placement.put(rest)
    abstract = with_shardings(jax.eval_shape(make_state, params, critic_params))
    shardings = jax.tree.map(lambda x: x.sharding, abstract)

    def init():
      with jax.set_mesh(placement.mesh):
        return jax.jit(make_state, out_shardings=shardings)(params, critic_params)
    return graphdef, rest, abstract, init

  def from_init(critic_params):
    _, params, rest = nnx.split(model(), nnx.Param, ...)
    return make_state(params, critic_params), rest

  graphdef, _, rest = nnx.split(nnx.eval_shape(model), nnx.Param, ...)
  abstract, abstract_rest = with_shardings(jax.eval_shape(from_init, critic_params))
  shardings = jax.tree.map(lambda x: x.sharding, (abstract, abstract_rest))

  def init_all():
    with jax.set_mesh(placement.mesh):
      return jax.jit(from_init, out_shardings=shardings)(critic_params)
  if jax.tree.leaves(rest):  # non-Param state needs its values even when params are restored
    state, rest = init_all()
    return graphdef, rest, abstract, lambda: state
  return graphdef, rest, abstract, lambda: init_all()[0]


def train(model: ModelOrInit, loss_fn: LossFn, loader: grain.DataLoader, cfg, workdir: str,
          *, seed: int, prepare_batch: Callable[[dict], dict] = lambda b: b,
          desc: str = "train", critic: Critic | None = None,
          frozen: tuple[str, ...] = (), placement: Placement | None = None,
          evaluate: Callable[[nnx.Module], dict] | None = None,
          constants: dict | None = None) -> nnx.Module:
  """Trains `model` for `cfg.steps` steps, resuming from the latest checkpoint in `workdir`.

  Args:
    model: an NNX module, or a function building it (then created directly sharded on the
      mesh); its Params are trained, everything else is left as is.
    loss_fn: (model, batch, rng) -> (scalar loss, metrics dict); traced under jit.
    loader: grain DataLoader whose iterator yields host batches (numpy dicts): this process's
      rows (`placement.process_rows(cfg.batch_size)`) of each global batch.
    cfg: stage config with steps, batch_size, accumulate, precision, learning_rate,
      warmup_steps, weight_decay, grad_clip, ema_decay, log_every, checkpoint_every, nan_policy
      ('skip' | 'stop') and max_nan_skips (a stage section of the schema, vdm/config/t2v.py
      `stage`).
    workdir: where `checkpoints/`, `tensorboard/` and `metrics.jsonl` go.
    prepare_batch: host-side transform of each batch (e.g. tokenizing captions).
    critic: an optional adversary trained alongside (see `Critic`); its parameters and optimizer
      state are checkpointed with the model's. None leaves the step exactly as without one.
    frozen: prefixes of parameter names that get no update (`make_optimizer`) and no gradient
      (held by stop_gradient).
    placement: the mesh and rules (vdm.parallel.placement); None: one device.
    evaluate: (EMA model) -> dict of scalars, run every `cfg.eval_every` steps when the stage
      has that field > 0 (held-out scores during training); lines go to `eval.jsonl` with the
      training seconds so far (evaluation time excluded) and to TensorBoard.
    constants: {name: pytree of arrays} every step reads besides the batch (frozen networks,
      e.g. a distillation teacher's state): replicated on the mesh once and added to each placed
      batch under its name, so they are arguments of the compiled step, not constants baked
      into it (the program stays small), and have no batch rows.
  Returns:
    the model with its parameters replaced by the EMA parameters (laid out on the mesh).
  Raises:
    faults.Preempted: on SIGTERM/SIGINT, after checkpointing the current step.
    faults.NonFiniteError: a non-finite step under nan_policy='stop', or more than max_nan_skips.
  """
  policy = cfg.nan_policy
  max_skips = cfg.max_nan_skips
  if policy not in faults.NAN_POLICIES:
    raise ValueError(f"nan_policy {policy!r}: allowed {list(faults.NAN_POLICIES)}")
  placement = placement or Placement.single_device()
  batch_size = cfg.batch_size
  placement.check_batch(batch_size, f"batch_size of the {desc} stage", cfg.accumulate)
  rows = placement.process_rows(batch_size)
  lead = distributed.is_lead()  # the one process that writes logs
  os.makedirs(workdir, exist_ok=True)
  # Non-Param state (none in the shipped models) rides along unchanged.
  plan = plan_step(model, loss_fn, cfg, placement, seed=seed, critic=critic, frozen=frozen)
  graphdef, rest, abstract = plan.graphdef, plan.rest, plan.abstract
  names = leaf_names(abstract["params"])
  if critic is not None:
    names += ["critic." + n for n in leaf_names(abstract["critic_params"])]
  iterator = iter(loader)
  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  for path in faults.partial_checkpoints(ckpt_dir):
    faults.report(f"[{desc}] skipping partial checkpoint {path} (an interrupted or failed save); "
                  "restoring the newest complete one")
  # cleanup_tmp_directories: orbax reuses the '<step>.orbax-checkpoint-tmp' name, so a leftover
  # would only be deleted at that step's next save; remove them now instead.
  manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
      max_to_keep=2, create=True, cleanup_tmp_directories=True))
  state, meta, last_saved = _restore_latest(manager, abstract, iterator, ckpt_dir, desc,
                                            rows.stop - rows.start)
  if state is None:  # a fresh run
    state = plan.init()
  skips = int(meta.get("nan_skips", 0))
  start = int(distributed.gather(state["step"]))
  if last_saved is not None:
    print(f"[{desc}] resumed from step {last_saved} in {workdir}")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if lead:
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

  train_step = plan.step
  # purge_step: TensorBoard drops events a killed run logged after the restored step.
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start + 1) if lead \
      else None
  bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc,
             disable=os.environ.get("VDM_NO_PROGRESS") == "1" or not lead)
  eval_every = cfg.get("eval_every", 0) if evaluate is not None else 0
  eval_path = os.path.join(workdir, "eval.jsonl")
  if eval_every and lead:
    faults.truncate_metrics(eval_path, start)
  eval_seconds = 0.0
  t0 = time.time()

  def close() -> None:
    if writer is not None:
      writer.close()

  constants = jax.device_put(constants or {}, placement.replicated)
  with faults.PreemptionGuard() as guard, placement.activate(), \
      open(metrics_path, "a") if lead else contextlib.nullcontext() as log:
    for step in bar:
      batch = dict(placement.place_batch(prepare_batch(next(iterator)), batch_size), **constants)
      state, metrics, finite, grads_finite = train_step(state, batch)
      done = step + 1
      # One scalar read per step, so 'stop' halts at the exact step and the skip count a
      # checkpoint stores is exact; the skip itself already happened inside the step.
      if not bool(distributed.gather(finite)):
        skips += 1
        loss = float(distributed.gather(metrics["loss"]))
        if policy == "stop" or skips > max_skips:
          bad = [n for n, ok in zip(names, distributed.gather(grads_finite)) if not ok]
          finish_saves()
          close()
          raise faults.NonFiniteError(faults.nonfinite_message(
              desc, done, policy, loss, bad, skips, max_skips, last_saved))
        faults.report(f"[{desc}] step {done}: non-finite loss or gradients (loss={loss}); "
                      f"update skipped ({skips}/{max_skips} allowed)")
      if done % cfg.log_every == 0 or done == cfg.steps:
        metrics = {k: float(v) for k, v in distributed.gather(metrics).items()}
        metrics["nan_skips"] = skips
        if lead:
          for name, value in metrics.items():
            writer.add_scalar(f"{desc}/{name}", value, done)
          log.write(json.dumps(dict(step=done, seconds=time.time() - t0, **metrics)) + "\n")
          log.flush()
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
      if eval_every and (done % eval_every == 0 or done == cfg.steps):
        t_eval = time.time()
        scores = evaluate(nnx.merge(graphdef, state["ema"], rest))
        eval_seconds += time.time() - t_eval
        if lead:
          for name, value in scores.items():
            writer.add_scalar(f"{desc}/eval/{name}", value, done)
          with open(eval_path, "a") as f:
            f.write(json.dumps(dict(step=done, train_seconds=time.time() - t0 - eval_seconds,
                                    **scores)) + "\n")
      if done % cfg.checkpoint_every == 0 or done == cfg.steps:
        save(done)
      # Every process stops at the same step: a signal seen by any of them stops them all.
      signum = distributed.any_signal(guard.signum)
      if signum is not None:
        if last_saved != done:
          save(done)
        finish_saves()
        close()
        error = faults.Preempted(signum, done, ckpt_dir)
        faults.report(f"[{desc}] {error}")
        raise error
  finish_saves()
  close()
  return nnx.merge(graphdef, state["ema"], rest)
