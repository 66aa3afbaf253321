"""Multi-process (multi-host) runs: JAX's own multi-controller runtime, nothing home-made.

Each process runs the same program on its own devices; `jax.distributed.initialize` connects them
and a mesh over `jax.devices()` (every process's devices) makes one global array of the per-process
pieces. On CPUs the collectives go through gloo, so a 2-process run on one machine tests the same
code paths a pod uses.

    initialize("10.0.0.1:1234", num_processes=4, process_id=rank)  # once, before anything else
    mesh = make_mesh(config.parallel)                                # over all processes' devices
    batch = shard_process_batch(local_batch, mesh, rules)            # each process: its own rows
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from vdm.parallel.rules import Rules
from vdm.parallel.sharding import batch_sharding, state_shardings


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
  """Starts the multi-process runtime (CPU collectives over gloo). Call before any JAX op."""
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"process_id {process_id} must be in [0, num_processes={num_processes})")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


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
