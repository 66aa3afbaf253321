"""One process of the multi-process training-step check (run by tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_JSON CHECKPOINT_DIR

8 CPU devices in all (8 / NUM_PROCESSES per process) on a data x fsdp x tensor = 2 x 2 x 2 mesh;
each process feeds its own rows of the global batch; two SGD steps of the tiny DiT's flow loss;
process 0 writes the losses and a per-parameter checksum; the final state is saved with orbax
(every process writes its shards).
"""
import json
import os
import sys

if __name__ == "__main__":  # devices per process, before JAX starts (importers keep theirs)
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // int(sys.argv[2])}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from vdm.parallel import activate, create_sharded, make_mesh, rules_for  # noqa: E402
from vdm.parallel.distributed import (initialize, process_rows, save_state,  # noqa: E402
                                      shard_process_batch)

TINY_DIT = dict(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2)


def init():
  """The tiny DiT with every weight random (adaLN-zero would zero most gradients)."""
  from vdm.dit.model import DiT
  model = DiT(**TINY_DIT, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [0.2 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


def global_batch(step):
  rng = np.random.default_rng(step)
  b, frames, size, channels, text_len = 8, 4, 8, 4, 6
  return dict(data=rng.standard_normal((b, frames, size, size, channels), np.float32),
              noise=rng.standard_normal((b, frames, size, size, channels), np.float32),
              levels=rng.uniform(size=(b, frames)).astype(np.float32),
              text=rng.standard_normal((b, text_len, 16), np.float32),
              mask=np.arange(text_len)[None, :] < rng.integers(1, text_len + 1, (b, 1)))


def loss_fn(model, batch):
  t = batch["levels"][:, :, None, None, None]
  z = (1.0 - t) * batch["noise"] + t * batch["data"]
  out = model(z, batch["levels"], batch["text"], batch["mask"])
  return jnp.mean(jnp.square(out - (batch["data"] - batch["noise"])))


@jax.jit
def train_step(model, batch):
  loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
  model = nnx.merge(graphdef, params, rest)
  checksum = jax.tree.map(lambda p: jnp.sum(p ** 2), params)
  return model, loss, checksum


def main():
  process_id, num_processes, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
  out_json, checkpoint_dir = sys.argv[4], sys.argv[5]
  if num_processes > 1:
    initialize(f"localhost:{port}", num_processes, process_id)
  assert len(jax.devices()) == 8, jax.devices()
  mesh, rules = make_mesh(dict(data=2, fsdp=2, tensor=2)), rules_for("factorized")
  model = create_sharded(init, mesh, rules)
  losses = []
  with activate(mesh, rules):
    for step in range(2):
      rows = process_rows(8)
      local = {k: v[rows] for k, v in global_batch(step).items()}
      model, loss, checksum = train_step(model, shard_process_batch(local, mesh, rules))
      losses.append(float(loss.addressable_data(0)))
  flat = jax.tree_util.tree_flatten_with_path(checksum)[0]
  sums = {jax.tree_util.keystr(path): float(x.addressable_data(0)) for path, x in flat}
  save_state(os.path.abspath(checkpoint_dir), model)
  if process_id == 0:
    with open(out_json, "w") as f:
      json.dump(dict(losses=losses, checksums=sums, processes=jax.process_count()), f)


if __name__ == "__main__":
  main()
