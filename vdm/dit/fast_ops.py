"""The DiT's two hot primitives with hand-written gradients, for speed on CPU (and bf16 anywhere).

Everything speed-related lives here, so the model code stays plain:
  * `layer_norm`: LayerNorm without scale/bias (adaLN supplies both) with a custom VJP; autodiff's
    backward of mean/variance makes large fusions that XLA:CPU runs slowly.
  * `dot_general(compute_dtype, fast_grads)`: the matmul of every `nnx.Linear` in the DiT (passed
    as its `dot_general`). Inputs are cast to `compute_dtype` (bfloat16 = mixed precision: bf16
    matmul inputs, fp32 accumulation, fp32 master weights) and, with fast_grads, the backward pass
    is written out so that no matmul contracts over its left operand's leading axis: on jaxlib
    0.10's CPU backend such a matmul (every weight gradient x^T g) leaves the fast YNNPACK path for
    Eigen, which is slower and has no bf16 x bf16 -> f32 kernel. The weight gradient transposes x
    first, behind an optimization barrier so XLA cannot fold the transpose back into the dot.
Values equal the plain ops' to float rounding (tests/test_fast_ops.py); README's benchmark section
gives what each change is worth.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """(x - mean) / sqrt(var + eps) over the last axis; statistics in fp32."""
  return _layer_norm_fwd(x, eps)[0]


def _layer_norm_fwd(x, eps):
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  centered = x32 - mean
  rstd = jax.lax.rsqrt(jnp.mean(centered * centered, -1, keepdims=True) + eps)
  y = centered * rstd
  # The empty array only carries x's dtype (bf16 runs): the gradient must come back in it.
  return y.astype(x.dtype), (y, rstd, jnp.zeros((0,), x.dtype))


def _layer_norm_bwd(eps, residuals, g):
  y, rstd, x_like = residuals
  g = g.astype(jnp.float32)
  dx = rstd * (g - g.mean(-1, keepdims=True) - y * (g * y).mean(-1, keepdims=True))
  return (dx.astype(x_like.dtype),)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def plain_layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """The same function left to autodiff (the baseline the benchmark compares against)."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x: jax.Array, w: jax.Array, compute_dtype: str) -> jax.Array:
  """x [N, K] @ w [K, M] -> [N, M] fp32, inputs cast to DTYPES[compute_dtype]."""
  dtype = DTYPES[compute_dtype]
  return jnp.dot(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _matmul_fwd(x, w, compute_dtype):
  dtype = DTYPES[compute_dtype]
  # Keep the cast inputs: in bf16 they are half the memory, and the backward needs them cast.
  return _matmul(x, w, compute_dtype), (x.astype(dtype), w.astype(dtype),
                                       jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _matmul_bwd(compute_dtype, residuals, g):
  x, w, x_like, w_like = residuals
  x_dtype, w_dtype = x_like.dtype, w_like.dtype
  g = g.astype(DTYPES[compute_dtype])
  # dx = g w^T contracts both operands' last axes: the fast path already.
  dx = jax.lax.dot_general(g, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  # dw = x^T g: transpose x first (materialized) so the dot contracts x^T's last axis.
  x_t = jax.lax.optimization_barrier(x.T)
  dw = jnp.dot(x_t, g, preferred_element_type=jnp.float32)
  return dx.astype(x_dtype), dw.astype(w_dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


@functools.lru_cache(maxsize=None)  # one function per setting: a stable static attribute for jit
def dot_general(compute_dtype: str = "float32", fast_grads: bool = True):
  """A `dot_general` for nnx.Linear: x [..., K] . kernel [K, M] in compute_dtype, fp32 out."""
  dtype = DTYPES[compute_dtype]

  def linear_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                 out_sharding=None):
    if out_sharding is not None:  # explicit-sharding mode: leave it to XLA's own dot
      return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision,
                                 preferred_element_type=preferred_element_type,
                                 out_sharding=out_sharding)
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if (tuple(lhs_contract) != (lhs.ndim - 1,) or tuple(rhs_contract) != (0,) or lhs_batch
        or rhs_batch or rhs.ndim != 2):
      raise ValueError(f"fast_ops.dot_general handles x[..., K] @ w[K, M] only, got "
                       f"{dimension_numbers} for {lhs.shape} x {rhs.shape}")
    flat = lhs.reshape(-1, lhs.shape[-1])
    if fast_grads:
      out = _matmul(flat, rhs, compute_dtype)
    else:
      out = jnp.dot(flat.astype(dtype), rhs.astype(dtype), preferred_element_type=jnp.float32)
    return out.reshape(lhs.shape[:-1] + (rhs.shape[1],)).astype(
        preferred_element_type or jnp.result_type(lhs, rhs))

  return linear_dot
