"""Sharding on 8 simulated CPU devices: each kind of parallelism computes what one device computes,
every parameter's sharding is pinned, the annotations left the parameters untouched, and a bad
`parallel` config is refused with the field named."""
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from vdm.dit.model import DiT
from vdm.parallel import (MeshConfigError, activate, create_sharded, logical_to_spec, make_mesh,
                          mesh_shape, rules_for, shard_batch, shard_model, state_specs)
from vdm.pytree import leaf_names
from vdm.text.encoder import T5Encoder

TINY_DIT = dict(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2)
TINY_T5 = dict(vocab_size=64, width=32, depth=1, heads=4, mlp=64)


def _flat(tree, is_leaf=None) -> dict:
  return dict(zip(leaf_names(tree, is_leaf), jax.tree.leaves(tree, is_leaf=is_leaf)))


def _batch(key=0, b=8, frames=8, size=8, channels=4, text_len=6, text_width=16):
  """A flow-matching batch: data, noise, per-frame levels, text and its mask."""
  r = jax.random.split(jax.random.key(key), 5)
  return dict(
      data=jax.random.normal(r[0], (b, frames, size, size, channels)),
      noise=jax.random.normal(r[1], (b, frames, size, size, channels)),
      levels=jax.random.uniform(r[2], (b, frames)),
      text=jax.random.normal(r[3], (b, text_len, text_width)),
      mask=jnp.arange(text_len)[None, :] < jax.random.randint(r[4], (b, 1), 1, text_len + 1))


def _loss_and_output(model, batch):
  """Flow matching: regress the velocity (data - noise) at z_t = (1 - t) noise + t data."""
  t = batch["levels"][:, :, None, None, None]
  z = (1.0 - t) * batch["noise"] + t * batch["data"]
  out = model(z, batch["levels"], batch["text"], batch["mask"])
  return jnp.mean(jnp.square(out - (batch["data"] - batch["noise"]))), out


def _forward_and_grads(model, batch):
  (loss, out), grads = nnx.value_and_grad(_loss_and_output, has_aux=True)(model, batch)
  return loss, out, grads


def _randomized_dit() -> DiT:
  """The tiny DiT with every weight random (adaLN-zero would zero most gradients)."""
  graphdef, params = nnx.split(DiT(**TINY_DIT, rngs=nnx.Rngs(0)), nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [0.2 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


@pytest.fixture(scope="module")
def single_device():
  """The randomized tiny DiT, a batch, and their one-device loss, output and gradients."""
  model, batch = _randomized_dit(), _batch()
  return model, batch, jax.device_get(jax.jit(_forward_and_grads)(model, batch))


@pytest.mark.parametrize("parallel, layout, sharded_param, out_spec", [
    (dict(data=8), "factorized", None, None),
    (dict(data=1, fsdp=8), "factorized", ("blocks.0.mlp.fc1.kernel", P("fsdp", None)), None),
    (dict(data=1, tensor=8), "factorized", ("blocks.0.mlp.fc1.kernel", P(None, "tensor")), None),
    # The activation constraints split the frames (the output keeps that layout).
    (dict(data=1, sequence=8), "factorized", None, P(None, "sequence")),
    (dict(data=1, sequence=8), "full", None, None),
    (dict(data=2, fsdp=2, tensor=2), "factorized",
     ("blocks.0.spatial.q.kernel", P("fsdp", "tensor")), None),
], ids=["data", "fsdp", "tensor", "sequence-frames", "sequence-tokens", "mixed"])
def test_sharded_forward_and_gradients_equal_one_device(single_device, parallel, layout,
                                                        sharded_param, out_spec):
  model, batch, (loss, out, grads) = single_device
  mesh, rules = make_mesh(parallel), rules_for(layout)
  sharded = shard_model(model, mesh, rules)
  if sharded_param:  # the parameters really are split as the rules say
    name, spec = sharded_param
    assert _flat(nnx.state(sharded))[name].sharding.spec == spec
  # A fresh jit per case: jit's cache does not key on the rules, only on the mesh and inputs.
  step = jax.jit(lambda m, b: _forward_and_grads(m, b))
  with activate(mesh, rules):
    s_loss, s_out, s_grads = step(sharded, shard_batch(batch, mesh, rules))
  assert len(s_out.sharding.device_set) == 8
  if out_spec is not None:
    assert s_out.sharding.spec == out_spec
  np.testing.assert_allclose(s_loss, loss, rtol=1e-5)
  np.testing.assert_allclose(s_out, out, rtol=1e-4, atol=1e-5)
  expected = _flat(grads)
  for name, g in _flat(s_grads).items():
    np.testing.assert_allclose(g, expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


# Every DiT parameter's sharding under the factorized rules: a change here changes how the model
# is laid out on a pod, so it must be deliberate.
DIT_SPECS = {
    "embed.kernel": (None, "fsdp"), "embed.bias": ("fsdp",),
    "time_mlp.fc1.kernel": ("fsdp", "tensor"), "time_mlp.fc1.bias": ("tensor",),
    "time_mlp.fc2.kernel": ("tensor", "fsdp"), "time_mlp.fc2.bias": ("fsdp",),
    "text_proj.kernel": (None, "fsdp"), "text_proj.bias": ("fsdp",),
    "pooled_text.kernel": ("fsdp", "tensor"), "pooled_text.bias": ("tensor",),
    **{f"blocks.0.{attn}.{proj}": spec
       for attn in ("spatial", "temporal", "cross")
       for proj, spec in (("q.kernel", ("fsdp", "tensor")), ("q.bias", ("tensor",)),
                          ("kv.kernel", ("fsdp", "tensor")), ("kv.bias", ("tensor",)),
                          ("out.kernel", ("tensor", "fsdp")), ("out.bias", ("fsdp",)))},
    "blocks.0.mlp.fc1.kernel": ("fsdp", "tensor"), "blocks.0.mlp.fc1.bias": ("tensor",),
    "blocks.0.mlp.fc2.kernel": ("tensor", "fsdp"), "blocks.0.mlp.fc2.bias": ("fsdp",),
    "blocks.0.modulation.kernel": ("fsdp", "tensor"), "blocks.0.modulation.bias": ("tensor",),
    "final_modulation.kernel": ("fsdp", "tensor"), "final_modulation.bias": ("tensor",),
    "final.kernel": ("fsdp", None), "final.bias": (None,),
}
T5_SPECS = {
    "embed.embedding": ("tensor", "fsdp"), "rel_bias.embedding": (None, None),
    "final_norm.scale": (None,), "layers.0.attn_norm.scale": (None,),
    "layers.0.mlp_norm.scale": (None,),
    "layers.0.qkv.kernel": ("fsdp", "tensor"), "layers.0.out.kernel": ("tensor", "fsdp"),
    "layers.0.wi.kernel": ("fsdp", "tensor"), "layers.0.wo.kernel": ("tensor", "fsdp"),
}


@pytest.mark.parametrize("init, golden", [
    (lambda: DiT(**TINY_DIT, rngs=nnx.Rngs(0)), DIT_SPECS),
    (lambda: T5Encoder(**TINY_T5, rngs=nnx.Rngs(0)), T5_SPECS),
], ids=["dit", "t5"])
def test_every_parameter_sharding_is_pinned(init, golden):
  specs = state_specs(nnx.state(nnx.eval_shape(init), nnx.Param), rules_for("factorized"))
  got = {name: tuple(spec) for name, spec in _flat(specs, is_leaf=lambda x: isinstance(x, P)).items()}
  assert got == {name: tuple(spec) for name, spec in golden.items()}


# sha256 of the tiny models' initial Params (path, shape, dtype, bytes) for seed 0, computed before
# the logical annotations were added: annotating must not move, reshape or re-draw a parameter,
# or trained checkpoints would stop loading. (A jax upgrade that changes the RNG may change it.)
INIT_DIGESTS = {
    "dit": "67002408e38093b7",
    "t5": "fe9c64096673dfc1",
}


def _digest(model) -> str:
  h = hashlib.sha256()
  for name, value in sorted(_flat(nnx.state(model, nnx.Param)).items()):
    a = np.asarray(value)
    h.update(f"{name}{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


@pytest.mark.parametrize("name, init", [
    ("dit", lambda: DiT(**TINY_DIT, rngs=nnx.Rngs(0))),
    ("t5", lambda: T5Encoder(**TINY_T5, rngs=nnx.Rngs(0))),
])
def test_init_is_unchanged_and_sharded_creation_draws_the_same_values(name, init):
  """Eager init: bitwise as before the annotations. Sharded creation (the init under jit): the
  same values up to float rounding, as XLA fuses some initializers (nnx.Embed's) differently."""
  model = init()
  assert _digest(model) == INIT_DIGESTS[name]
  mesh = make_mesh(dict(data=2, fsdp=2, tensor=2))
  sharded = create_sharded(init, mesh, rules_for("factorized"))
  plain, laid_out = _flat(nnx.state(model)), _flat(nnx.state(sharded))
  assert plain.keys() == laid_out.keys()
  for key, value in laid_out.items():
    np.testing.assert_allclose(value, plain[key], rtol=1e-6, atol=1e-7, err_msg=key)
  if name == "dit":  # adaLN-zero stays zero, and the layout followed the rules
    np.testing.assert_array_equal(laid_out["blocks.0.modulation.kernel"], 0.0)
    assert laid_out["blocks.0.modulation.kernel"].sharding.spec == P("fsdp", "tensor")


def test_scanned_layers_shard_like_the_unrolled_ones(single_device):
  """dit.scan_layers stacks each block parameter along a leading 'layers' axis that stays whole;
  its other axes shard as the unrolled golden above says, and the sharded scanned model computes
  what one device computes with the unrolled one."""
  from vdm.dit.model import scan_params
  init = lambda: DiT(**TINY_DIT, scan_layers=True, rngs=nnx.Rngs(0))  # noqa: E731
  specs = state_specs(nnx.state(nnx.eval_shape(init), nnx.Param), rules_for("factorized"))
  got = {name: tuple(spec) for name, spec in _flat(specs, is_leaf=lambda x: isinstance(x, P)).items()}
  want = {name.replace("blocks.0.", "blocks."): (None, *spec) if name.startswith("blocks.")
          else spec for name, spec in DIT_SPECS.items()}
  assert got == {name: tuple(spec) for name, spec in want.items()}

  model, batch, (loss, out, grads) = single_device
  scanned = nnx.eval_shape(init)
  nnx.update(scanned, scan_params(nnx.state(model, nnx.Param), TINY_DIT["depth"]))
  mesh, rules = make_mesh(dict(data=2, fsdp=2, tensor=2)), rules_for("factorized")
  sharded = shard_model(scanned, mesh, rules)
  assert _flat(nnx.state(sharded))["blocks.mlp.fc1.kernel"].sharding.spec == P(None, "fsdp",
                                                                               "tensor")
  step = jax.jit(lambda m, b: _forward_and_grads(m, b))
  with activate(mesh, rules):
    s_loss, s_out, s_grads = step(sharded, shard_batch(batch, mesh, rules))
  np.testing.assert_allclose(s_loss, loss, rtol=1e-5)
  np.testing.assert_allclose(s_out, out, rtol=1e-4, atol=1e-5)
  expected = _flat(scan_params(nnx.state(grads, nnx.Param), TINY_DIT["depth"]))
  for name, g in _flat(nnx.state(s_grads, nnx.Param)).items():
    np.testing.assert_allclose(g, expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_batch_is_split_along_its_batch_axis():
  mesh, rules = make_mesh(dict(data=2, fsdp=2, tensor=2)), rules_for("factorized")
  batch = shard_batch(dict(z=np.zeros((4, 3, 2)), ids=np.zeros((4, 5), np.int32)), mesh, rules)
  assert batch["z"].sharding.spec == P(("data", "fsdp"), None, None)
  assert batch["ids"].sharding.spec == P(("data", "fsdp"), None)


def test_mesh_from_config():
  assert mesh_shape(dict(data=-1, tensor=2), 8) == dict(data=4, fsdp=1, tensor=2, sequence=1)
  # A single process may ask for fewer devices than it has: the mesh takes the first ones.
  small = make_mesh(dict(data=1, tensor=2), use_all=False)
  assert small.shape["tensor"] == 2 and list(small.devices.flat) == jax.devices()[:2]
  assert make_mesh(dict(data=2, fsdp=2, tensor=2)).shape == dict(data=2, fsdp=2, tensor=2,
                                                                  sequence=1)


@pytest.mark.parametrize("parallel, message", [
    (dict(data=3), r"parallel\.data=3 \* parallel\.fsdp=1 .* = 3, but there are 8 devices"),
    (dict(data=16), r"parallel\.data=16 \* .* = 16, but there are 8 devices"),
    (dict(tensor=0), r"parallel\.tensor=0 is invalid"),
    (dict(sequence=2.0), r"parallel\.sequence=2\.0 is invalid"),
    (dict(fsdp=True), r"parallel\.fsdp=True is invalid"),
    (dict(pipeline=2), r"parallel\.pipeline is unknown"),
    (dict(data=-1, fsdp=-1), r"parallel\.data and parallel\.fsdp are both -1"),
    (dict(data=-1, tensor=3), r"parallel\.data=-1 cannot be resolved"),
])
def test_invalid_mesh_config_names_the_field(parallel, message):
  with pytest.raises(MeshConfigError, match=message):
    make_mesh(parallel)


def test_rules_reject_unknown_names_and_layouts_and_replicate_what_does_not_divide():
  rules = rules_for("factorized")
  with pytest.raises(ValueError, match="'hedas' has no sharding rule"):
    logical_to_spec(("embed", "hedas"), rules)
  with pytest.raises(ValueError, match="layout 'diagonal'"):
    rules_for("diagonal")
  mesh = make_mesh(dict(data=1, tensor=8))
  assert logical_to_spec(("embed", "heads"), rules, shape=(32, 6), mesh=mesh) == P(None, None)
  # A mesh axis splits at most one array axis.
  assert logical_to_spec(("embed", "embed"), rules) == P("fsdp", None)


@pytest.mark.parametrize("parallel, heads", [
    (dict(data=2, sequence=4), 4),
    (dict(data=1, tensor=2, sequence=4), 8),
], ids=["data2-sequence4", "tensor2-sequence4"])
def test_ulysses_attention_equals_unsharded(randomized_dit, parallel, heads):
  """Full 3D attention over tokens split 4 ways, run as Ulysses all-to-alls (a head split per
  device), gives one device's loss, output and gradients; the compiled step really exchanges by
  all-to-all. A block-causal temporal mask rides along (frames 0-1 | 2-3)."""
  from vdm.generate.modes import block_causal_mask
  from vdm.parallel.attention import sequence_attention
  model = randomized_dit(depth=1, heads=heads, attention="full")
  batch = _batch(b=4, frames=4)
  mask = jnp.asarray(block_causal_mask(4, 2))

  def loss_and_output(model, batch):
    t = batch["levels"][:, :, None, None, None]
    z = (1.0 - t) * batch["noise"] + t * batch["data"]
    out = model(z, batch["levels"], batch["text"], batch["mask"], mask)
    return jnp.mean(jnp.square(out - (batch["data"] - batch["noise"]))), out

  def step(model, batch):
    (loss, out), grads = nnx.value_and_grad(loss_and_output, has_aux=True)(model, batch)
    return loss, out, grads

  loss, out, grads = jax.device_get(jax.jit(step)(model, batch))
  mesh, rules = make_mesh(parallel), rules_for("full")
  sharded, placed = shard_model(model, mesh, rules), shard_batch(batch, mesh, rules)
  ulysses = jax.jit(lambda m, b: step(m, b))
  with activate(mesh, rules), sequence_attention("ulysses"):
    s_loss, s_out, s_grads = ulysses(sharded, placed)
    hlo = ulysses.lower(sharded, placed).compile().as_text()
  assert "all-to-all" in hlo
  np.testing.assert_allclose(s_loss, loss, rtol=1e-5)
  np.testing.assert_allclose(s_out, out, rtol=1e-4, atol=1e-5)
  expected = _flat(grads)
  for name, g in _flat(s_grads).items():
    np.testing.assert_allclose(g, expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_ulysses_refuses_heads_that_do_not_divide(randomized_dit):
  from vdm.parallel.attention import sequence_attention
  model = randomized_dit(depth=1, heads=2, attention="full")
  mesh, rules = make_mesh(dict(data=1, sequence=8)), rules_for("full")
  batch = _batch(b=1, frames=2)
  with activate(mesh, rules), sequence_attention("ulysses"), pytest.raises(
      ValueError, match="parallel.sequence=8, but each device has 2 heads"):
    jax.jit(lambda m, b: _loss_and_output(m, b))(shard_model(model, mesh, rules),
                                                 shard_batch(batch, mesh, rules))
