"""vdm.parallel: the device mesh, the logical → mesh axis rules, and sharding helpers.

Typical use:
  mesh = make_mesh(config.parallel)                 # axes data, fsdp, tensor, sequence
  rules = rules_for("factorized")                   # the one rules table, per attention layout
  model = create_sharded(lambda: DiT(..., rngs=nnx.Rngs(0)), mesh, rules)
  with activate(mesh, rules):                       # activations follow the same rules
    out = jax.jit(fn)(model, shard_batch(batch, mesh, rules))

Multi-process (one process per host): `vdm.parallel.distributed` (jax.distributed start,
per-process batches, orbax checkpoints written shard by shard and restored onto any mesh).
"""
from vdm.parallel.mesh import DEFAULT_PARALLEL, MeshConfigError, make_mesh, mesh_shape
from vdm.parallel.rules import LAYOUTS, MESH_AXES, Rules, logical_to_spec, rules_for
from vdm.parallel.sharding import (activate, batch_sharding, constrain, create_sharded,
                                   logical_axes, shard_batch, shard_model, state_shardings,
                                   state_specs)
