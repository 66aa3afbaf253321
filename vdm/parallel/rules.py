"""The one table that maps logical axis names (what a model calls an axis) to mesh axes.

Models name the axes of their parameters and activations with the logical names below; only this
table says which mesh axis (`data`, `fsdp`, `tensor`, `sequence`) each one is split over. A rule
maps a name to a mesh axis, a tuple of mesh axes, or None (replicated).

Logical names:
  parameters   embed (model width) · heads (attention projections, all heads side by side) ·
               mlp (MLP and conditioning hidden width) · vocab · patch (patchified latent
               channels) · text_embed (text encoder width as the DiT reads it) · norm (norm
               scales) · buckets (relative-position buckets) · head_count (bias per head) ·
               layers (the stacked layer axis of scanned blocks, dit.scan_layers)
  activations  batch · frames · tokens (patches of one frame) · text_tokens · act_embed
"""
from __future__ import annotations

from typing import Sequence

import jax
from jax.sharding import PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor", "sequence")
LAYOUTS = ("factorized", "full")

Rules = tuple[tuple[str, "str | tuple[str, ...] | None"], ...]

# Rules shared by every attention layout.
_COMMON: Rules = (
    # Parameters: FSDP splits the model width, tensor parallelism the heads and hidden widths.
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("patch", None),
    ("text_embed", None),
    ("norm", None),
    ("buckets", None),
    ("head_count", None),
    # Scanned layers are stacked along a leading axis; each scan step reads one whole layer.
    ("layers", None),
    # Activations: the batch is split over data and fsdp (FSDP is data parallelism whose
    # parameters are gathered per layer); the activation width stays whole.
    ("batch", ("data", "fsdp")),
    ("text_tokens", None),
    ("act_embed", None),
)

# Sequence parallelism follows the attention layout: factorized attention keeps each frame's
# tokens on one device (spatial attention, the larger one, stays local; temporal attention
# exchanges), full 3D attention splits the joint token sequence, here its per-frame tokens.
_SEQUENCE: dict[str, Rules] = {
    "factorized": (("frames", "sequence"), ("tokens", None)),
    "full": (("frames", None), ("tokens", "sequence")),
}


def rules_for(layout: str = "factorized") -> Rules:
  """The logical → mesh axis rules for an attention layout ('factorized' or 'full')."""
  if layout not in _SEQUENCE:
    raise ValueError(f"attention layout {layout!r}: allowed {list(LAYOUTS)}")
  return _COMMON + _SEQUENCE[layout]


def logical_to_spec(names: Sequence[str | None] | None, rules: Rules, *,
                    shape: Sequence[int] | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> PartitionSpec:
  """PartitionSpec for an array whose axes have logical `names` (None: replicated axis).

  A mesh axis already used by an earlier array axis is skipped (one mesh axis can split only one
  array axis), and so is a mesh axis of size 1. Given `shape` and `mesh`, an axis whose length the
  mesh axes do not divide is replicated instead of failing (e.g. 6 heads on tensor=4).
  Raises ValueError for a logical name the rules do not know, so a typo cannot silently replicate.
  """
  if not names:
    return PartitionSpec()
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for i, name in enumerate(names):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise ValueError(f"logical axis {name!r} has no sharding rule; known: {sorted(table)}")
    target = table[name]
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes
                 if a not in used and (mesh is None or mesh.shape.get(a, 1) > 1))
    if shape is not None and mesh is not None and axes:
      size = 1
      for a in axes:
        size *= mesh.shape[a]
      if shape[i] % size:
        axes = ()
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)
