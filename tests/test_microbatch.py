"""Gradient accumulation and mixed precision in the one loop (vdm/train/microbatch.py).

Accumulated micro-batch gradients equal the whole batch's for a loss that is a mean over rows;
through `vdm.train.loop.train` an accumulating run ends on the same weights as a plain one.
bfloat16 runs keep fp32 master weights, optimizer moments and EMA while the DiT computes in bf16.
"""
import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import section
from vdm.parallel.placement import Placement
from vdm.train.loop import train
from vdm.train.microbatch import accumulated_value_and_grad, compute_copy, split_microbatches


def _row_mean_loss(params, batch, rng):
  del rng  # deterministic: micro-batches then sum exactly to the whole batch
  pred = jnp.tanh(batch["x"] @ params["w"]) @ params["v"]
  loss = jnp.mean(jnp.square(pred - batch["y"]))
  return loss, dict(mse=loss)


def _params_and_batch(b=8):
  r = jax.random.split(jax.random.key(0), 4)
  params = dict(w=jax.random.normal(r[0], (5, 7)), v=jax.random.normal(r[1], (7, 3)))
  return params, dict(x=jax.random.normal(r[2], (b, 5)), y=jax.random.normal(r[3], (b, 3)))


def test_microbatches_interleave_rows():
  batch = dict(x=jnp.arange(8 * 2).reshape(8, 2), scale=jnp.float32(3.0))
  micro = split_microbatches(batch, 4, 8)
  assert micro["x"].shape == (4, 2, 2)
  np.testing.assert_array_equal(micro["x"][1], batch["x"][1::4])  # rows 1 and 5
  np.testing.assert_array_equal(micro["scale"], [3.0] * 4)


@pytest.mark.parametrize("accumulate", [2, 4, 8])
def test_accumulated_gradients_equal_the_whole_batch(accumulate):
  params, batch = _params_and_batch()
  rng = jax.random.key(1)
  (loss, metrics), grads = accumulated_value_and_grad(_row_mean_loss, params, batch, rng,
                                                      accumulate=1, batch_size=8)
  (a_loss, a_metrics), a_grads = jax.jit(
      lambda p, b: accumulated_value_and_grad(_row_mean_loss, p, b, rng, accumulate=accumulate,
                                              batch_size=8))(params, batch)
  np.testing.assert_allclose(a_loss, loss, rtol=1e-6)
  np.testing.assert_allclose(a_metrics["mse"], metrics["mse"], rtol=1e-6)
  for name in grads:
    np.testing.assert_allclose(a_grads[name], grads[name], rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(grads["w"]).max()) > 0


class _Regressor(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(5, 16, rngs=rngs)
    self.out = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x.astype(self.hidden.kernel.dtype))))


def _regression_loss(model, batch, rng):
  del rng
  pred = model(batch["x"])
  loss = jnp.mean(jnp.square(pred.astype(jnp.float32) - batch["y"]))
  return loss, dict(pred_dtype_is_bf16=jnp.float32(pred.dtype == jnp.bfloat16))


class _Rows(grain.sources.RandomAccessDataSource):
  """64 fixed regression rows as a grain source."""

  def __init__(self):
    rng = np.random.default_rng(0)
    self.x = rng.standard_normal((64, 5)).astype(np.float32)
    self.y = np.tanh(self.x @ rng.standard_normal((5, 3))).astype(np.float32)

  def __len__(self):
    return 64

  def __getitem__(self, i):
    return dict(x=self.x[i], y=self.y[i])

  def __repr__(self):
    return "_Rows(64)"


def _train(workdir, **stage):
  cfg = section("train.dit", steps=6, batch_size=8, warmup_steps=1, learning_rate=1e-2,
                log_every=1, checkpoint_every=6, **stage)
  sampler = grain.samplers.IndexSampler(64, shuffle=True, seed=0, num_epochs=None)
  loader = grain.DataLoader(data_source=_Rows(), sampler=sampler, worker_count=0,
                            shard_options=grain.sharding.NoSharding(),
                            operations=[grain.transforms.Batch(8, drop_remainder=True)])
  model = train(lambda: _Regressor(nnx.Rngs(0)), _regression_loss, loader, cfg, str(workdir),
                seed=0, desc="toy", placement=Placement.single_device())
  return nnx.state(model, nnx.Param)


def test_loop_with_accumulation_ends_on_the_same_weights(tmp_path):
  plain = _train(tmp_path / "plain")
  accumulated = _train(tmp_path / "acc", accumulate=4)
  for a, b in zip(jax.tree.leaves(accumulated), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_runs_compute_in_bf16_and_keep_fp32_masters(tmp_path):
  import json
  import orbax.checkpoint as ocp
  plain = _train(tmp_path / "fp32")
  mixed = _train(tmp_path / "bf16", precision="bfloat16")
  log = [json.loads(l) for l in open(tmp_path / "bf16" / "metrics.jsonl")]
  assert all(l["pred_dtype_is_bf16"] == 1.0 for l in log)  # activations were bf16
  state = ocp.StandardCheckpointer().restore(str(tmp_path / "bf16" / "checkpoints" / "6" / "state"))
  floats = [x for x in jax.tree.leaves(state) if np.issubdtype(np.asarray(x).dtype, np.floating)]
  assert floats and all(np.asarray(x).dtype == np.float32 for x in floats)  # masters, moments, EMA
  # bf16 compute moves the weights differently, but only by bf16 rounding over 6 steps.
  for a, b in zip(jax.tree.leaves(mixed), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)
    assert not np.array_equal(a, b)


def test_dit_computes_in_its_parameters_dtype(randomized_dit):
  model = randomized_dit(depth=1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  r = jax.random.split(jax.random.key(0), 3)
  z = jax.random.normal(r[0], (2, 3, 8, 8, 4))
  levels = jax.random.uniform(r[1], (2, 3))
  text = jax.random.normal(r[2], (2, 5, 16))
  mask = jnp.ones((2, 5), bool)

  def forward(params):
    return nnx.merge(graphdef, params, rest)(z, levels, text, mask)

  out32 = forward(params)
  out16 = forward(compute_copy(params, "bfloat16"))
  assert out32.dtype == jnp.float32 and out16.dtype == jnp.bfloat16
  error = float(jnp.abs(out16.astype(jnp.float32) - out32).max() / jnp.abs(out32).max())
  assert 0 < error < 0.05
  grads = jax.grad(lambda p: jnp.mean(forward(compute_copy(p, "bfloat16")).astype(
      jnp.float32) ** 2))(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))  # fp32 master gradients
