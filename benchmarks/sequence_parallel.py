"""Sequence parallelism for full 3D attention: memory per device and step time of the plain layout
(one device holds the whole clip) against the clip's tokens split over 8 devices, attended by
the compiler's gather ('gspmd') or by Ulysses all-to-alls (vdm/parallel/attention.py).

A DiT with full attention (forward + backward of the flow loss; the optimizer is the same in
every layout); memory is XLA's compiled memory analysis of one device's program (temporaries:
activations, gradients, workspace), time the best of `--repeats` steps. On 8 simulated CPU
devices the time says only what the layouts cost on 2 shared cores (the split work is not run
in parallel); the memory is what each device of a real mesh would hold.

  python -m benchmarks sequence_parallel [--frames 8] [--size 16] [--repeats 3] [--tiny]
"""
from __future__ import annotations

import argparse
import statistics

from vdm.parallel.mesh import use_cpu_devices


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks sequence_parallel")
  parser.add_argument("--frames", type=int, default=8, help="latent frames")
  parser.add_argument("--size", type=int, default=16, help="latent height and width")
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--heads", type=int, default=8, help="a multiple of the 8 devices")
  parser.add_argument("--depth", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--tiny", action="store_true", help="toy shape (smoke test)")
  args = parser.parse_args(argv)
  use_cpu_devices(8, "the sequence_parallel benchmark's")

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from benchmarks.common import timed, write
  from vdm.diffusion import flow_matching_loss, interpolate
  from vdm.dit.model import DiT
  from vdm.parallel import activate, make_mesh, rules_for, shard_batch, shard_model
  from vdm.parallel.attention import sequence_attention

  if args.tiny:
    args.frames, args.size, args.width, args.depth = 2, 8, 64, 1
  model = DiT(latent_channels=4, text_width=32, width=args.width, depth=args.depth,
              heads=args.heads, patch=2, attention="full", rngs=nnx.Rngs(0))
  r = jax.random.split(jax.random.key(0), 3)
  batch = dict(x0=jax.random.normal(r[0], (1, args.frames, args.size, args.size, 4)),
               noise=jax.random.normal(r[1], (1, args.frames, args.size, args.size, 4)),
               text=jax.random.normal(r[2], (1, 16, 32)), mask=jnp.ones((1, 16), bool))

  def loss(model, batch):
    levels = jnp.full(batch["x0"].shape[:2], 0.5)
    v = model(interpolate(batch["x0"], batch["noise"], levels), levels, batch["text"],
              batch["mask"])
    return flow_matching_loss(v, batch["x0"], batch["noise"])

  def measure(label, model, batch, context):
    step = jax.jit(lambda m, b: nnx.value_and_grad(loss)(m, b))
    with context():
      compiled = step.lower(model, batch).compile()
      first, times = timed(lambda: jax.block_until_ready(step(model, batch)), args.repeats)
    memory = compiled.memory_analysis()
    devices = len(jax.tree.leaves(nnx.state(model))[0].sharding.device_set)
    return dict(layout=label, devices=devices,
                temp_mib=memory.temp_size_in_bytes / 2 ** 20,
                args_mib=memory.argument_size_in_bytes / 2 ** 20, first_s=first,
                best_s=min(times), median_s=statistics.median(times))

  import contextlib
  rows = [measure("plain (1 device)", model, batch, contextlib.nullcontext)]
  mesh, rules = make_mesh(dict(sequence=8)), rules_for("full")
  sharded, placed = shard_model(model, mesh, rules), shard_batch(batch, mesh, rules)
  for kind in ("gspmd", "ulysses"):
    def context(kind=kind):
      stack = contextlib.ExitStack()
      stack.enter_context(activate(mesh, rules))
      stack.enter_context(sequence_attention(kind))
      return stack
    rows.append(measure(f"sequence 8, {kind}", sharded, placed, context))
  tokens = args.frames * (args.size // 2) ** 2
  write("sequence_parallel" + ("_tiny" if args.tiny else ""), rows,
        dict(shape=dict(frames=args.frames, size=args.size, tokens=tokens, width=args.width,
                        heads=args.heads, depth=args.depth)))
