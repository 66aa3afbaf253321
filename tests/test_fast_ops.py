"""The hand-written gradients equal autodiff's, and bf16 matmuls stay close to fp32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.dit import fast_ops
from vdm.dit.model import DiT


def test_layer_norm_value_and_gradient_equal_autodiff():
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 7, 48))
  w = jax.random.normal(jax.random.key(1), x.shape)
  f = lambda norm: lambda x: jnp.sum(jnp.sin(norm(x)) * w)  # noqa: E731
  np.testing.assert_allclose(fast_ops.layer_norm(x), fast_ops.plain_layer_norm(x), atol=1e-5)
  np.testing.assert_allclose(jax.grad(f(fast_ops.layer_norm))(x),
                             jax.grad(f(fast_ops.plain_layer_norm))(x), atol=1e-5)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("bfloat16", 3e-2)])
def test_linear_with_fast_dot_general_equals_plain_linear(dtype, tol):
  plain = nnx.Linear(24, 40, rngs=nnx.Rngs(0))
  fast = nnx.Linear(24, 40, rngs=nnx.Rngs(0), dot_general=fast_ops.dot_general(dtype, True))
  x = jax.random.normal(jax.random.key(2), (3, 5, 24))
  loss = lambda m, x: jnp.sum(jnp.tanh(m(x)))  # noqa: E731
  np.testing.assert_allclose(fast(x), plain(x), rtol=tol, atol=tol)
  (g_fast, gx_fast), (g_plain, gx_plain) = (nnx.grad(loss, argnums=(0, 1))(m, x)
                                            for m in (fast, plain))
  np.testing.assert_allclose(gx_fast, gx_plain, rtol=tol, atol=tol)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 4)


def test_dit_fast_path_matches_the_plain_path_and_keeps_its_parameters(randomized_dit):
  kwargs = dict(latent_channels=4, text_width=16, width=32, depth=2, heads=4, patch=2)
  fast = DiT(**kwargs, rngs=nnx.Rngs(0))
  plain = DiT(**kwargs, fast_grads=False, rngs=nnx.Rngs(0))
  # Same parameter tree (checkpoints load either way); copy random weights into both.
  source = randomized_dit()
  for m in (fast, plain):
    nnx.update(m, nnx.state(source, nnx.Param))
  r = jax.random.split(jax.random.key(3), 3)
  z = jax.random.normal(r[0], (2, 3, 4, 4, 4))
  levels = jax.random.uniform(r[1], (2, 3))
  text = jax.random.normal(r[2], (2, 5, 16))
  mask = jnp.ones((2, 5), bool)
  loss = lambda m: jnp.mean(m(z, levels, text, mask) ** 2)  # noqa: E731
  np.testing.assert_allclose(loss(fast), loss(plain), rtol=1e-5)
  g_fast, g_plain = nnx.grad(loss)(fast), nnx.grad(loss)(plain)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_unknown_matmul_dtype_is_named():
  with pytest.raises(ValueError, match="dit.matmul_dtype"):
    DiT(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2,
        matmul_dtype="float16", rngs=nnx.Rngs(0))


def test_gradients_come_back_in_the_input_dtype():
  """bf16 inputs (a bf16 model) get bf16 gradients from both custom VJPs."""
  x = jax.random.normal(jax.random.key(4), (3, 16)).astype(jnp.bfloat16)
  g = jax.grad(lambda x: jnp.sum(fast_ops.layer_norm(x).astype(jnp.float32)))(x)
  assert g.dtype == jnp.bfloat16
  w = jax.random.normal(jax.random.key(5), (16, 8)).astype(jnp.bfloat16)
  dot = fast_ops.dot_general("float32", True)
  gx, gw = jax.grad(lambda x, w: jnp.sum(dot(x, w, (((1,), (0,)), ((), ())))), (0, 1))(x, w)
  assert gx.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
