"""T5-layout weights: save -> load into a fresh encoder gives the same outputs; the names and
shapes are T5 v1.1's; a file for another shape is refused with every problem named."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.text.encoder import T5Encoder
from vdm.text.t5_weights import load_t5_weights, save_t5_weights

SHAPE = dict(vocab_size=64, width=32, depth=2, heads=4, mlp=48)


def test_round_trip_through_the_t5_layout(tmp_path):
  source = T5Encoder(**SHAPE, rngs=nnx.Rngs(0))
  path = str(tmp_path / "t5.npz")
  save_t5_weights(source, path)
  with np.load(path, allow_pickle=False) as f:
    names = set(f.files)
    assert f["encoder.block.1.layer.0.SelfAttention.q.weight"].shape == (32, 32)
    assert f["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape == (48, 32)
    assert f["encoder.block.0.layer.1.DenseReluDense.wo.weight"].shape == (32, 48)
    assert f["shared.weight"].shape == (64, 32)
  assert "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" in names
  assert len(names) == 3 + 2 * 9
  target = T5Encoder(**SHAPE, rngs=nnx.Rngs(1))  # different random init
  ids = jax.random.randint(jax.random.key(2), (2, 7), 3, 64)
  mask = jnp.arange(7)[None] < jnp.array([[7], [4]])
  assert not np.allclose(target(ids, mask), source(ids, mask))
  load_t5_weights(target, path)
  np.testing.assert_array_equal(target(ids, mask), source(ids, mask))


def test_a_file_for_another_shape_is_refused_untouched(tmp_path):
  path = str(tmp_path / "wide.npz")
  save_t5_weights(T5Encoder(**dict(SHAPE, width=64, depth=1), rngs=nnx.Rngs(0)), path)
  target = T5Encoder(**SHAPE, rngs=nnx.Rngs(1))
  before = np.asarray(target.embed.embedding[...])
  with pytest.raises(ValueError, match=r"shared\.weight: file \(64, 64\) vs model \(64, 32\)"):
    load_t5_weights(target, path)
  np.testing.assert_array_equal(target.embed.embedding[...], before)
  with pytest.raises(FileNotFoundError):
    load_t5_weights(target, str(tmp_path / "absent.npz"))


def test_missing_blocks_are_named(tmp_path):
  path = str(tmp_path / "shallow.npz")
  save_t5_weights(T5Encoder(**dict(SHAPE, depth=1), rngs=nnx.Rngs(0)), path)
  with pytest.raises(ValueError, match=r"missing encoder\.block\.1\.layer\.0\.SelfAttention\.q"):
    load_t5_weights(T5Encoder(**SHAPE, rngs=nnx.Rngs(1)), path)
