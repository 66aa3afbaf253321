"""Dotted names for the leaves of a parameter tree: 'blocks.0.attn.q.kernel'.

One naming for every place that talks about parameters by name: freezing by prefix
(train.loop), non-finite gradient reports, checkpoint mismatch messages (models.load_params) and
the sharding golden test.
"""
from __future__ import annotations

import jax


def _key_name(key) -> str:
  for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def leaf_names(tree, is_leaf=None) -> list[str]:
  """Dotted names of the leaves of `tree`, in `jax.tree.leaves` order; the '.value' level that
  nnx Variables add is left out."""
  paths = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return [".".join(n for n in map(_key_name, path) if n not in ("", "value"))
          for path, _ in paths]
