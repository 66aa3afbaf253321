"""Test setup: simulate 8 CPU devices (set before jax is imported) and keep runs deterministic."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture
def randomized_dit():
  """Builds a small DiT whose zero-initialised (adaLN-zero) weights are replaced by random ones,
  so that every path through the network matters."""
  def build(depth=2, width=32, heads=4, latent_channels=4, text_width=16,
            attention="factorized", qk_norm=False, **options):
    import jax
    from flax import nnx
    from vdm.dit.model import DiT
    model = DiT(latent_channels=latent_channels, text_width=text_width, width=width, depth=depth,
                heads=heads, patch=2, attention=attention, qk_norm=qk_norm,
                rngs=nnx.Rngs(0), **options)
    graphdef, params = nnx.split(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [0.2 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  return build
