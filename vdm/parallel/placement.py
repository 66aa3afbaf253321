"""Where one run's arrays live: its mesh and rules, and how state and batches get onto them.

`vdm train` builds one `Placement` from the config's `parallel` section and hands it to every
stage of the one loop (vdm/train/loop.py), so a single CPU, 8 simulated devices, a GPU node and a
multi-host TPU slice run the same code: the state is laid out by the logical names its Variables
carry (`shardings`), each process loads only the rows of a global batch that its own devices hold
(`process_rows`) and `place_batch` assembles them into global arrays.

    placement = Placement.from_config(config.parallel, layout=config.dit.attention)
    rows = placement.process_rows(batch_size)      # the loader of this process reads these
    batch = placement.place_batch(local_rows)      # global arrays split along 'batch'
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from vdm.parallel.attention import sequence_attention
from vdm.parallel.mesh import MeshConfigError, make_mesh
from vdm.parallel.rules import MESH_AXES, Rules, logical_to_spec, rules_for
from vdm.parallel.sharding import activate, batch_sharding, create_sharded


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


@dataclasses.dataclass(frozen=True)
class Placement:
  """A mesh and the logical -> mesh axis rules of one run, and how attention over a split
  sequence runs (`vdm.parallel.attention`)."""
  mesh: jax.sharding.Mesh
  rules: Rules
  sequence_attention: str = "gspmd"

  @classmethod
  def from_config(cls, parallel: Mapping[str, int] | None, layout: str = "factorized",
                  *, verbose: bool = True) -> "Placement":
    """The mesh of `parallel` (the config section) with the rules of attention `layout`.

    A single process may leave devices out of the mesh (the config asks for fewer); it says so,
    since on a GPU node that is usually a forgotten `--set parallel.data=-1`.
    """
    parallel = dict(parallel or {})
    mesh = make_mesh({k: v for k, v in parallel.items() if k in MESH_AXES},
                     use_all=jax.process_count() > 1)
    idle = jax.device_count() - mesh.size
    if idle and verbose:
      print(f"[vdm] the mesh uses {mesh.size} of {jax.device_count()} devices "
            f"({_describe(mesh)}); set parallel.data=-1 to use them all")
    return cls(mesh, rules_for(layout), parallel.get("sequence_attention", "gspmd"))

  @classmethod
  def single_device(cls, layout: str = "factorized") -> "Placement":
    """One device (the first): what a run without a `parallel` section gets."""
    return cls(make_mesh(dict(data=1), use_all=False), rules_for(layout))

  def __str__(self) -> str:
    return _describe(self.mesh)

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  def shardings(self, tree: Any) -> Any:
    """NamedShardings for a pytree (concrete or from eval_shape) whose nnx Variables carry
    logical names (`vdm.parallel.logical_axes`): params, optimizer moments (optax keeps the
    Variables) and EMA follow their names; every other leaf (counters, scalars) is replicated."""
    def one(x):
      if _is_variable(x):
        if not hasattr(x.get_value(), "shape"):  # e.g. optax's MaskedNode of a frozen leaf
          return x  # holds no array, so nothing to place
        names = x.get_metadata().get("out_sharding")
        spec = logical_to_spec(names, self.rules, shape=x.get_value().shape, mesh=self.mesh)
        return x.replace(NamedSharding(self.mesh, spec))
      return self.replicated
    return jax.tree.map(one, tree, is_leaf=_is_variable)

  def put(self, tree: Any) -> Any:
    """`tree`'s arrays (the same values in every process) laid out by `shardings`. Across
    processes the values travel as host numpy arrays, which every process holds whole."""
    if jax.process_count() > 1:
      tree = jax.tree.map(np.asarray, tree)
    return jax.device_put(tree, self.shardings(tree))

  def create(self, init) -> nnx.Module:
    """`init()`'s module created under jit directly in its shardings (`create_sharded`)."""
    return create_sharded(init, self.mesh, self.rules)

  def data_ways(self) -> int:
    """Devices the batch is split over (the mesh axes the 'batch' rule names)."""
    spec = logical_to_spec(("batch",), self.rules, mesh=self.mesh)[0]
    axes = () if spec is None else (spec,) if isinstance(spec, str) else spec
    return int(np.prod([self.mesh.shape[a] for a in axes], dtype=int))

  def check_batch(self, batch_size: int, field: str, accumulate: int = 1) -> None:
    """Refuses a global batch that the data-parallel devices cannot split evenly (it would be
    replicated instead: every device computing every row), micro-batch by micro-batch."""
    ways = self.data_ways()
    if batch_size % (ways * accumulate):
      times = f" x accumulate {accumulate}" if accumulate > 1 else ""
      raise MeshConfigError(
          f"config field {field}={batch_size} is invalid: allowed a multiple of "
          f"parallel.data x parallel.fsdp{times} = {ways * accumulate} (the devices each "
          f"micro-batch is split over; mesh {self})")

  def process_rows(self, batch_size: int) -> slice:
    """The rows [start, stop) of a global batch held by this process's devices: what its loader
    reads (all of them in a single process, or when the batch is not split over processes)."""
    sharding = batch_sharding(np.empty((batch_size,), np.float32), self.mesh, self.rules)
    slices = [index[0] for index in sharding.addressable_devices_indices_map(
        (batch_size,)).values()]
    rows = sorted({(s.start or 0, batch_size if s.stop is None else s.stop) for s in slices})
    start, stop = rows[0][0], max(r[1] for r in rows)
    covered = sum(b - a for a, b in rows)
    if covered != stop - start:  # this process's devices hold rows that are not contiguous
      raise MeshConfigError(f"the batch rows of process {jax.process_index()} on mesh {self} "
                            "are not contiguous; order the mesh axes so that data and fsdp "
                            "split across processes")
    return slice(start, stop)

  def place_batch(self, local: Any, batch_size: int) -> Any:
    """Global arrays of `batch_size` rows, split along 'batch', from this process's rows
    (`process_rows(batch_size)`) of every array of a host batch; a scalar (the same in every
    process) is replicated."""
    rows = self.process_rows(batch_size)

    def put(x):
      x = np.asarray(x)
      if x.ndim == 0:
        return jax.make_array_from_process_local_data(self.replicated, x, x.shape)
      if x.shape[0] != rows.stop - rows.start:
        raise ValueError(f"process {jax.process_index()} holds rows {rows.start}:{rows.stop} "
                         f"of a batch of {batch_size}, got an array of {x.shape[0]} rows")
      global_shape = (batch_size,) + x.shape[1:]
      sharding = batch_sharding(np.empty(global_shape, x.dtype), self.mesh, self.rules)
      return jax.make_array_from_process_local_data(sharding, x, global_shape)
    return jax.tree.map(put, local)

  def abstract_batch(self, shapes: Mapping[str, tuple]) -> dict:
    """{name: ShapeDtypeStruct} of a global batch, laid out as `place_batch` lays it out, from
    {name: (shape, dtype)}: what a step is lowered for without data."""
    def one(shape, dtype):
      sharding = batch_sharding(_Shape(tuple(shape)), self.mesh, self.rules)
      return jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype), sharding=sharding)
    return {name: one(*spec) for name, spec in shapes.items()}

  @contextlib.contextmanager
  def activate(self):
    """Activations follow the rules inside this context (`vdm.parallel.activate`), and split
    sequences are attended as `sequence_attention` says."""
    with activate(self.mesh, self.rules), sequence_attention(self.sequence_attention):
      yield


@dataclasses.dataclass(frozen=True)
class _Shape:
  """Just the .shape and .ndim `batch_sharding` reads."""
  shape: tuple

  @property
  def ndim(self) -> int:
    return len(self.shape)


def _describe(mesh: jax.sharding.Mesh) -> str:
  return " x ".join(f"{name} {size}" for name, size in mesh.shape.items())
