"""The device mesh, built from the config's `parallel` section.

`config.parallel = dict(data=1, fsdp=1, tensor=1, sequence=1)`: how many ways each mesh axis
splits the work; -1 (at most one field) takes the devices the others leave. Without a -1 a
single-process run may use fewer devices than it has (the first ones; a note says so), so a
config means the same computation on any machine; a multi-process run must use every device.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np

from vdm.parallel.rules import MESH_AXES

DEFAULT_PARALLEL = dict(data=-1, fsdp=1, tensor=1, sequence=1)


class MeshConfigError(ValueError):
  """An invalid `parallel` config; the message names the field."""


def mesh_shape(parallel: Mapping[str, int] | None, num_devices: int, *,
               use_all: bool = True) -> dict[str, int]:
  """Resolves the `parallel` config to {axis: size} over `num_devices` devices.

  Missing fields default to 1 (data to -1). With use_all the product must be `num_devices`;
  without, it may be smaller (the mesh then takes the first devices). Raises MeshConfigError
  naming the field.
  """
  fields = dict(DEFAULT_PARALLEL)
  for key, value in dict(parallel or {}).items():
    if key not in fields:
      raise MeshConfigError(f"config field parallel.{key} is unknown: allowed {list(MESH_AXES)}")
    fields[key] = value
  for key, value in fields.items():
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
        value < 1 and value != -1):
      raise MeshConfigError(f"config field parallel.{key}={value!r} is invalid: allowed a "
                            "positive int, or -1 for the remaining devices")
  rest = [key for key, value in fields.items() if value == -1]
  if len(rest) > 1:
    raise MeshConfigError(f"config fields parallel.{' and parallel.'.join(rest)} are both -1: "
                          "at most one axis may take the remaining devices")
  fixed = math.prod(value for value in fields.values() if value != -1)
  if rest:
    if num_devices % fixed:
      raise MeshConfigError(
          f"config field parallel.{rest[0]}=-1 cannot be resolved: the other axes use {fixed} "
          f"devices, which does not divide the {num_devices} devices")
    fields[rest[0]] = num_devices // fixed
  elif fixed > num_devices or (use_all and fixed != num_devices):
    sizes = " * ".join(f"parallel.{k}={v}" for k, v in fields.items())
    need = "at most" if not use_all else "exactly (every process's devices)"
    raise MeshConfigError(f"config fields {sizes} = {fixed}, but there are {num_devices} devices "
                          f"and the mesh must use {need} that many; set one field to -1 to "
                          "take the remaining devices")
  return {axis: int(fields[axis]) for axis in MESH_AXES}


def make_mesh(parallel: Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None, *,
              use_all: bool = True) -> jax.sharding.Mesh:
  """A mesh with axes (data, fsdp, tensor, sequence) over `devices` (default: all devices).

  use_all=False (single process only) lets the fields ask for fewer devices than there are:
  the mesh takes the first ones.
  Axes are `Auto` (GSPMD-style): shardings come from the logical rules and the compiler
  propagates them, instead of every op naming its output sharding (jax 0.10's Explicit default).
  """
  devices = list(jax.devices() if devices is None else devices)
  if not use_all and jax.process_count() > 1:
    raise MeshConfigError("a multi-process run must put every process's devices in the mesh")
  shape = mesh_shape(parallel, len(devices), use_all=use_all)
  devices = devices[:math.prod(shape.values())]
  return jax.make_mesh(tuple(shape.values()), MESH_AXES, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def use_cpu_devices(count: int, flag: str = "devices") -> None:
  """Simulates `count` CPU devices (XLA's host platform) for a mesh of a machine one does not
  have; call before any JAX computation. A process already running on `count` CPU devices (the
  tests' 8) is left as it is; on others it raises ValueError naming `flag`."""
  from jax._src import xla_bridge
  if count < 1:
    raise ValueError(f"{flag} {count} must be an integer >= 1")
  if xla_bridge.backends_are_initialized():
    if jax.device_count() != count or jax.default_backend() != "cpu":
      raise ValueError(f"{flag} {count}: this process already runs on {jax.device_count()} "
                       f"{jax.default_backend()} devices")
    return
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", count)
