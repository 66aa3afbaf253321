"""Multi-process (multi-host) runs: JAX's own multi-controller runtime, nothing home-made.

Each process runs the same program on its own devices; `jax.distributed.initialize` connects them
and a mesh over `jax.devices()` (every process's devices) makes one global array of the per-process
pieces. On CPUs the collectives go through gloo, so a 2-process run on one machine tests the same
code paths a pod uses.

    initialize("10.0.0.1:1234", num_processes=4, process_id=rank)  # once, before anything else
                                                          # (None, None, None on a TPU pod/SLURM)
    mesh = make_mesh(config.parallel)                                # over all processes' devices
    batch = shard_process_batch(local_batch, mesh, rules)            # each process: its own rows
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from vdm.parallel.rules import Rules
from vdm.parallel.sharding import batch_sharding, state_shardings


def initialize(coordinator: str | None, num_processes: int | None,
               process_id: int | None) -> None:
  """Starts the multi-process runtime; call before any JAX computation.

  Arguments left None are found by `jax.distributed.initialize` itself: the coordinator from
  JAX_COORDINATOR_ADDRESS, the rest from the cluster (TPU pod slices, SLURM, Open MPI,
  Kubernetes). CPU collectives go through gloo, so processes on one machine run the code paths
  of a pod.
  """
  if num_processes is not None and (num_processes < 1 or process_id is None
                                    or not 0 <= process_id < num_processes):
    raise ValueError(f"--process-id {process_id} must be an integer in [0, --num-processes="
                     f"{num_processes})")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def launched_as_several(num_processes: int | None = None) -> bool:
  """Whether this process is one of several: --num-processes > 1, JAX_COORDINATOR_ADDRESS set,
  or a cluster launcher that started several tasks (SLURM, Open MPI, a multi-host TPU slice)."""
  env = os.environ
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  return ((num_processes or 1) > 1 or bool(env.get("JAX_COORDINATOR_ADDRESS"))
          or int(env.get("SLURM_NTASKS", "1") or 1) > 1
          or int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1 or len(hosts) > 1)


def gather(tree: Any) -> Any:
  """numpy copies of whole arrays, however they are split: every process gets all of each (an
  all-gather across processes for arrays it does not hold entirely). For exports and evaluation
  of models small enough for one host."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(one, tree)


def local_copy(module: nnx.Module) -> nnx.Module:
  """The module with every array whole on this process's default device: what host-side code
  (a jitted encode of local rows, an export, an evaluation) can run in any process."""
  graphdef, state = nnx.split(module)
  return nnx.merge(graphdef, jax.tree.map(jax.numpy.asarray, gather(state)))


def is_lead() -> bool:
  """True in process 0, the one that writes logs, sidecars and other single files."""
  return jax.process_index() == 0


def any_signal(signum: int | None) -> int | None:
  """The signal number any process has seen (None: none has), the same in every process, so a
  preemption that reaches one host stops them all at the same step. One small all-gather per
  call in a multi-process run; no communication in a single process."""
  if jax.process_count() == 1:
    return signum
  from jax.experimental import multihost_utils
  seen = multihost_utils.process_allgather(np.int32(signum or 0))
  return int(seen.max()) or None


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op in a single process): what one
  process writes before it, the others can read after it."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that this process loads (contiguous, in process order)."""
  n = jax.process_count()
  if global_batch_size % n:
    raise ValueError(f"global batch {global_batch_size} does not divide over {n} processes")
  per = global_batch_size // n
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


def shard_process_batch(local_batch: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
  """Global arrays, split along 'batch', from each process's own rows (`process_rows`)."""
  def put(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    sharding = batch_sharding(np.empty(global_shape, x.dtype), mesh, rules)
    return jax.make_array_from_process_local_data(sharding, x, global_shape)
  return jax.tree.map(put, local_batch)


def save_state(path: str, model: nnx.Module) -> None:
  """Saves a (sharded) model's state with orbax; every process writes its own shards."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, nnx.state(model))


def restore_onto(path: str, init, mesh: jax.sharding.Mesh, rules: Rules) -> nnx.Module:
  """Restores a state saved by `save_state` (on any mesh) directly into this mesh's shardings.

  init: () -> the model (only its shapes are used, through nnx.eval_shape).
  """
  abstract = nnx.eval_shape(init)
  graphdef, state = nnx.split(abstract)
  shardings = state_shardings(abstract, mesh, rules)
  target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(path, target)
  return nnx.merge(graphdef, restored)
