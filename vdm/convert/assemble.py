"""A module's parameters built one tensor at a time from a checkpoint, straight into place.

`materialize(abstract, recipes)` walks the parameters of an abstract module (`nnx.eval_shape`)
and asks `recipes[name]()` for each one's array (read from the checkpoint when asked), puts it on
its device or mesh sharding and forgets the host copy before the next: a checkpoint never sits
whole in host memory, and a model larger than one device's memory lands split over the mesh.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Recipe = Callable[[], np.ndarray]


def param_names(module: nnx.Module) -> list[str]:
  """Dotted names ('blocks.0.joint.q.kernel') of a module's Params, in state order."""
  return [".".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(module, nnx.Param))]


def materialize(abstract: nnx.Module, recipes: Mapping[str, Recipe], *, dtype=None,
                shardings=None, where: str = "checkpoint") -> nnx.Module:
  """The module `abstract` (from nnx.eval_shape) with every Param from `recipes`.

  dtype: None keeps each array's dtype as read (a bf16 checkpoint stays bf16), else a dtype to
  cast to. shardings: None (default device) or the NamedSharding tree of the Params
  (`vdm.parallel.sharding.state_shardings`). Raises ValueError naming every parameter the
  recipes lack or give in the wrong shape, before reading any tensor.
  """
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  flat = list(nnx.to_flat_state(params))
  names = [".".join(map(str, path)) for path, _ in flat]
  missing = [n for n in names if n not in recipes]
  extra = sorted(set(recipes) - set(names))
  if missing or extra:
    raise ValueError(f"{where}: does not fit this model: missing {missing[:8]} "
                     f"({len(missing)}), unexpected {extra[:8]} ({len(extra)})")
  sharding_of = {}
  if shardings is not None:
    sharding_of = {".".join(map(str, p)): v.get_value() if isinstance(v, nnx.Variable) else v
                   for p, v in nnx.to_flat_state(shardings)}
  out = []
  for (path, var), name in zip(flat, names):
    value = recipes[name]()
    if tuple(value.shape) != tuple(var.get_value().shape):
      raise ValueError(f"{where}: {name} has shape {tuple(value.shape)}, the model wants "
                       f"{tuple(var.get_value().shape)}")
    if dtype is not None:
      value = value.astype(jnp.dtype(dtype))
    array = jax.device_put(value, sharding_of.get(name))
    out.append((path, var.replace(array)))
  return nnx.merge(graphdef, nnx.from_flat_state(out), rest)


def param_shapes(module: nnx.Module) -> list[tuple[str, tuple]]:
  """(dotted name, shape) of a module's Params (concrete or abstract), in state order."""
  return [(".".join(map(str, path)), tuple(var.get_value().shape))
          for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param))]
