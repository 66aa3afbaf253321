"""Sharding helpers: logical annotations + rules + mesh -> NamedShardings, sharded models and batches.

Parameter shardings are read from the `out_sharding` metadata (logical names) that the model
files put on their Params, on an abstract model from `nnx.eval_shape` of the init: nothing is
computed to learn the layout (as big_vision derives shardings from eval_shape).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import jax
from flax import nnx
from flax.core import spmd as flax_spmd
from jax.sharding import NamedSharding, PartitionSpec

from vdm.parallel.rules import Rules, logical_to_spec


def logical_axes(*names: str | None) -> dict:
  """Variable metadata naming a Param's axes: `nnx.Linear(..., kernel_metadata=logical_axes(...))`.

  Only metadata: values, paths and the init stay as they were. eager_sharding=False keeps flax
  from laying the value out at creation (logical names are not mesh axes, and a model must build
  without a mesh); vdm.parallel lays it out instead (`create_sharded`, `shard_model`).
  """
  return dict(out_sharding=tuple(names), eager_sharding=False)


@contextlib.contextmanager
def activate(mesh: jax.sharding.Mesh, rules: Rules):
  """Within this context, `constrain` shards activations by `rules` over `mesh`.

  Sets jax's current mesh and flax's logical axis rules (so `nnx.get_partition_spec` sees them).
  jit's cache keys on the mesh but not on the rules: a function traced under one rules table is
  reused under another, so jit a fresh function per rules table.
  """
  with jax.set_mesh(mesh), flax_spmd.logical_axis_rules(rules):
    yield


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Constrains activation `x` (axes named by logical `names`) to its sharding; a no-op unless
  called inside `activate(mesh, rules)`, so model code runs unchanged on one device."""
  rules = flax_spmd.get_logical_axis_rules()
  mesh = jax.sharding.get_abstract_mesh()
  if not rules or mesh.empty:
    return x
  spec = logical_to_spec(names, rules, shape=x.shape, mesh=mesh)
  return jax.lax.with_sharding_constraint(x, spec)


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def state_specs(state, rules: Rules, mesh: jax.sharding.Mesh | None = None):
  """PartitionSpecs of an nnx State (concrete or abstract), Variable for Variable.

  Variables without logical names are replicated.
  """
  def spec(v):
    names = v.get_metadata().get("out_sharding")
    shape = getattr(v.get_value(), "shape", None)
    return v.replace(logical_to_spec(names, rules, shape=shape, mesh=mesh))
  return jax.tree.map(spec, state, is_leaf=_is_variable)


def state_shardings(model_or_init: nnx.Module | Callable[[], nnx.Module],
                    mesh: jax.sharding.Mesh, rules: Rules, *filters):
  """NamedShardings for `nnx.state(model, *filters)`, from a model or an init function.

  An init function is only traced (`nnx.eval_shape`), never run.
  """
  model = model_or_init
  if not isinstance(model, nnx.Module):
    model = nnx.eval_shape(model_or_init)
  specs = state_specs(nnx.state(model, *filters), rules, mesh)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs)


def create_sharded(init: Callable[[], nnx.Module], mesh: jax.sharding.Mesh,
                   rules: Rules) -> nnx.Module:
  """Runs `init` under jit with each Variable created directly in its sharding.

  No device ever holds the whole model. The values equal `init()`'s for the same seed up to float
  rounding (XLA fuses some initializers differently from eager execution; seen: 1 ulp in
  nnx.Embed); for bit-identical values, `shard_model(init(), mesh, rules)`.
  """
  abstract = nnx.eval_shape(init)
  graphdef, _ = nnx.split(abstract)
  shardings = state_shardings(abstract, mesh, rules)

  @jax.jit(out_shardings=shardings)
  def make():
    return nnx.state(init())

  with jax.set_mesh(mesh):
    state = make()
  return nnx.merge(graphdef, state)


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh, rules: Rules) -> nnx.Module:
  """Moves an existing model's state to its shardings (e.g. after a single-device restore)."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, jax.device_put(state, state_shardings(model, mesh, rules)))


def batch_sharding(x, mesh: jax.sharding.Mesh, rules: Rules,
                   names: Sequence[str | None] = ("batch",)) -> NamedSharding:
  """Sharding of a batch array whose leading axes have logical `names` (the rest replicated)."""
  names = tuple(names)[:x.ndim] + (None,) * max(0, x.ndim - len(names))
  return NamedSharding(mesh, logical_to_spec(names, rules, shape=x.shape, mesh=mesh))


def shard_batch(batch: Any, mesh: jax.sharding.Mesh, rules: Rules,
                names: dict[str, Sequence[str | None]] | None = None) -> Any:
  """Puts every array of a (host) batch on the mesh, split along its leading 'batch' axis.

  `names` optionally gives other logical axes per top-level key, e.g. {'z': ('batch', 'frames')}.
  Single-process only: every process would pass the global batch.
  """
  names = names or {}

  def put(path, x):
    key = getattr(path[0], "key", None) if path else None
    return jax.device_put(x, batch_sharding(x, mesh, rules, names.get(key, ("batch",))))
  return jax.tree_util.tree_map_with_path(put, batch)
