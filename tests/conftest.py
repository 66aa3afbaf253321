"""Test setup: simulate 8 CPU devices (set before jax is imported) and keep runs deterministic."""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the whole run: both xdist workers and every `vdm`
# subprocess a test starts inherit it, so the many tests that build the same tiny model compile it
# once. A cached executable is the one a fresh compile would give (the key is the program, the
# backend and the flags), so it cannot change a number; the folder is bounded (LRU, 2 GiB).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"vdm-tests-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

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
