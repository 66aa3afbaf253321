"""3D colour look-up tables: Adobe/Resolve `.cube` files and their interpolation.

A LUT is a table [N, N, N, 3] indexed [r, g, b] (the file stores red fastest), mapping the cube
[domain_min, domain_max]^3 to output RGB. `apply_lut` interpolates it trilinearly (8 corners) or
tetrahedrally (4 corners of the tetrahedron the colour falls in; the interpolation most grading
tools use: it keeps the grey axis exact and costs half the gathers).
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

INTERPOLATIONS = ("trilinear", "tetrahedral")
MIN_SIZE, MAX_SIZE = 2, 256  # what the .cube specification allows; 17, 33 and 65 are usual


@dataclasses.dataclass(frozen=True)
class Lut:
  """table: float32 [N, N, N, 3] indexed [r, g, b]; domain_min/max: float32 [3]."""
  table: np.ndarray
  domain_min: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3, np.float32))
  domain_max: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(3, np.float32))
  title: str = ""

  @property
  def size(self) -> int:
    return self.table.shape[0]


def identity_table(size: int) -> np.ndarray:
  """The identity LUT table, float32 [size, size, size, 3] indexed [r, g, b]."""
  g = np.linspace(0.0, 1.0, size, dtype=np.float32)
  r, gg, b = np.meshgrid(g, g, g, indexing="ij")
  return np.stack([r, gg, b], axis=-1)


def _check_table(table: np.ndarray, where: str) -> np.ndarray:
  table = np.asarray(table, np.float32)
  n = table.shape[0] if table.ndim == 4 else -1
  if table.ndim != 4 or table.shape != (n, n, n, 3):
    raise ValueError(f"{where}: LUT table must be [N, N, N, 3], got shape {table.shape}")
  if not MIN_SIZE <= n <= MAX_SIZE:
    raise ValueError(f"{where}: LUT size must be in [{MIN_SIZE}, {MAX_SIZE}], got {n}")
  if not np.all(np.isfinite(table)):
    raise ValueError(f"{where}: LUT table has non-finite values")
  return table


def read_cube(path: str) -> Lut:
  """Reads a 3D `.cube` file. Errors name the file and line for anything malformed."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"grade: lut file {path!r} does not exist")
  size, title, rows = None, "", []
  dmin, dmax = np.zeros(3, np.float32), np.ones(3, np.float32)
  with open(path, encoding="utf-8", errors="replace") as f:
    for lineno, raw in enumerate(f, 1):
      line = raw.split("#", 1)[0].strip()
      if not line:
        continue
      head, *rest = line.split()
      where = f"{path}:{lineno}"
      try:
        if head == "TITLE":
          title = line[len("TITLE"):].strip().strip('"')
        elif head == "LUT_3D_SIZE":
          size = int(rest[0])
          if not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"{where}: LUT_3D_SIZE must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
        elif head == "LUT_1D_SIZE":
          raise ValueError(f"{where}: 1D LUTs are not supported (only LUT_3D_SIZE)")
        elif head == "DOMAIN_MIN":
          dmin = np.array([float(v) for v in rest], np.float32).reshape(3)
        elif head == "DOMAIN_MAX":
          dmax = np.array([float(v) for v in rest], np.float32).reshape(3)
        elif head == "LUT_3D_INPUT_RANGE":  # Resolve's spelling of one domain for all channels
          dmin[:], dmax[:] = float(rest[0]), float(rest[1])
        elif head[0].isalpha() and head.isupper():
          pass  # other keywords (e.g. LUT_IN_VIDEO_RANGE) do not change the mapping
        else:
          rows.append([float(v) for v in line.split()])
          if len(rows[-1]) != 3:
            raise ValueError(f"{where}: a data line must hold 3 numbers, got {line!r}")
      except (IndexError, ValueError) as e:
        if str(e).startswith(where):
          raise
        raise ValueError(f"{where}: cannot parse {line!r} ({e})") from None
  if size is None:
    raise ValueError(f"{path}: no LUT_3D_SIZE line")
  if len(rows) != size**3:
    raise ValueError(f"{path}: LUT_3D_SIZE {size} needs {size**3} data lines, found {len(rows)}")
  if np.any(dmax <= dmin):
    raise ValueError(f"{path}: DOMAIN_MAX {dmax} must exceed DOMAIN_MIN {dmin}")
  # Red varies fastest: file order is [b, g, r]; transpose to [r, g, b].
  table = np.asarray(rows, np.float32).reshape(size, size, size, 3).transpose(2, 1, 0, 3)
  return Lut(_check_table(table, path), dmin, dmax, title)


def write_cube(path: str, lut: Lut | np.ndarray, title: str = "") -> None:
  """Writes a LUT (or a table [N, N, N, 3] indexed [r, g, b]) as a 3D `.cube` file."""
  if not isinstance(lut, Lut):
    lut = Lut(np.asarray(lut, np.float32), title=title)
  table = _check_table(lut.table, path)
  n = table.shape[0]
  lines = [f'TITLE "{title or lut.title}"', f"LUT_3D_SIZE {n}",
           "DOMAIN_MIN " + " ".join(f"{v:.6f}" for v in lut.domain_min),
           "DOMAIN_MAX " + " ".join(f"{v:.6f}" for v in lut.domain_max)]
  data = table.transpose(2, 1, 0, 3).reshape(-1, 3)
  lines += [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in data]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def apply_lut(x: jax.Array, table: jax.Array, domain_min: jax.Array, domain_max: jax.Array,
              interpolation: str = "trilinear") -> jax.Array:
  """Maps colours x [..., 3] (float) through table [N, N, N, 3]; returns [..., 3].

  Inputs outside the domain are clamped to it (the .cube convention).
  """
  n = table.shape[0]
  flat = table.reshape(-1, 3)
  strides = jnp.array([n * n, n, 1], jnp.int32)
  pos = (x - domain_min) / (domain_max - domain_min) * (n - 1)
  pos = jnp.clip(pos, 0.0, n - 1)
  # Lower corner clamped to n-2 so the upper corner exists; at the top edge frac becomes 1.
  base = jnp.minimum(jnp.floor(pos), n - 2).astype(jnp.int32)
  frac = pos - base
  base_idx = (base * strides).sum(-1)

  def corner(offset):  # offset [..., 3] of 0/1 ints
    return flat[base_idx + (offset * strides).sum(-1)]

  if interpolation == "trilinear":
    out = 0.0
    for dr in (0, 1):
      for dg in (0, 1):
        for db in (0, 1):
          w = ((frac[..., 0] if dr else 1 - frac[..., 0]) *
               (frac[..., 1] if dg else 1 - frac[..., 1]) *
               (frac[..., 2] if db else 1 - frac[..., 2]))
          out = out + w[..., None] * flat[base_idx + dr * n * n + dg * n + db]
    return out
  if interpolation == "tetrahedral":
    # The order of the fractions picks the tetrahedron: walk from corner 000 along the axis
    # with the largest fraction, then add the second (i.e. all axes but the smallest), then
    # to 111; the weights are the differences of the sorted fractions.
    f_max, f_min = frac.max(-1, keepdims=True), frac.min(-1, keepdims=True)
    f_mid = frac.sum(-1, keepdims=True) - f_max - f_min
    e1 = jax.nn.one_hot(frac.argmax(-1), 3, dtype=jnp.int32)
    e2 = 1 - jax.nn.one_hot(frac.argmin(-1), 3, dtype=jnp.int32)
    c0 = flat[base_idx]
    c3 = flat[base_idx + n * n + n + 1]
    return ((1 - f_max) * c0 + (f_max - f_mid) * corner(e1) + (f_mid - f_min) * corner(e2)
            + f_min * c3)
  raise ValueError(f"grade: lut_interp must be one of {INTERPOLATIONS}, got {interpolation!r}")
