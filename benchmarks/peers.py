"""vdm's DiT against PyTorch peers on the CPU, in one run: diffusers' Latte (factorized spatial /
temporal blocks, like vdm's default) and Wan (full 3D attention, like vdm's dit.attention=full)
train steps at the shared shape, back to back, in fp32 and bf16.

Shared shape (issue #9): batch 2, latents 8 frames x 16 x 16 x 4, patch 2 (64 tokens a frame),
width 384, 6 heads x 64, 4 layers, 16 text tokens of width 384; a train step is forward +
backward + AdamW. The models differ in what a layer holds (Latte's 4 layers are 4 spatial and 4
temporal blocks), so each is scored by its own FLOPs per second: matmul and attention FLOPs,
counted for the torch models by torch.utils.flop_counter on one step and for vdm by the same
rule in closed form (benchmarks/flops.py). The steps are interleaved (vdm, Latte, Wan, vdm, ...)
so a load change on a shared machine hits every model alike; min and median are reported.

Needs the optional extra: pip install -e '.[peers]' (torch CPU and diffusers).

  python -m benchmarks peers [--repeats 10] [--dtypes float32,bfloat16] [--tiny]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

SHAPE = dict(batch=2, frames=8, size=16, channels=4, patch=2, width=384, heads=6, depth=4,
             text=16, mlp_ratio=4.0)
TINY = dict(batch=1, frames=2, size=8, channels=4, patch=2, width=64, heads=2, depth=1, text=4,
            mlp_ratio=4.0)


def _torch_models(s: dict):
  """(name, model, inputs(), vdm attention it is compared with) of each diffusers peer."""
  import torch
  from diffusers import LatteTransformer3DModel, WanTransformer3DModel
  head_dim = s["width"] // s["heads"]
  latte = LatteTransformer3DModel(
      num_attention_heads=s["heads"], attention_head_dim=head_dim, in_channels=s["channels"],
      out_channels=s["channels"], num_layers=s["depth"], cross_attention_dim=s["width"],
      sample_size=s["size"], patch_size=s["patch"], activation_fn="gelu-approximate",
      num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False,
      norm_eps=1e-6, caption_channels=s["width"], video_length=s["frames"])
  wan = WanTransformer3DModel(
      patch_size=(1, s["patch"], s["patch"]), num_attention_heads=s["heads"],
      attention_head_dim=head_dim, in_channels=s["channels"], out_channels=s["channels"],
      text_dim=s["width"], freq_dim=256, ffn_dim=int(s["width"] * s["mlp_ratio"]),
      num_layers=s["depth"])
  g = torch.Generator().manual_seed(0)
  x = torch.randn(s["batch"], s["channels"], s["frames"], s["size"], s["size"], generator=g)
  text = torch.randn(s["batch"], s["text"], s["width"], generator=g)
  t = torch.full((s["batch"],), 500, dtype=torch.long)
  return [
      ("Latte", latte, lambda: dict(hidden_states=x, timestep=t, encoder_hidden_states=text,
                                    return_dict=False), "factorized"),
      ("Wan", wan, lambda: dict(hidden_states=x, timestep=t, encoder_hidden_states=text,
                                return_dict=False), "full"),
  ]


def _torch_step(model, inputs, dtype: str):
  """A train step of a torch model (MSE to a fixed target, AdamW); returns step()."""
  import torch
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  target = None

  def step():
    nonlocal target
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      out = model(**inputs())[0]
    if target is None:
      target = torch.zeros_like(out, dtype=torch.float32)
    loss = torch.mean((out.float() - target) ** 2)
    loss.backward()
    opt.step()
  return step


def _torch_flops(step) -> float:
  from torch.utils.flop_counter import FlopCounterMode
  with FlopCounterMode(display=False) as counter:
    step()
  return float(counter.get_total_flops())


def _vdm_step(s: dict, attention: str, dtype: str):
  """(step(), its matmul + attention FLOPs) of vdm's DiT at the shape, as benchmarks/train_step."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from benchmarks.flops import dit_forward_flops, train_step_flops
  from benchmarks.train_step import make_step
  from vdm.dit.model import DiT
  model = DiT(latent_channels=s["channels"], text_width=s["width"], width=s["width"],
              depth=s["depth"], heads=s["heads"], patch=s["patch"], mlp_ratio=s["mlp_ratio"],
              attention=attention, matmul_dtype=dtype, rngs=nnx.Rngs(0))
  tx = optax.adamw(1e-4)
  step, params = make_step(model, tx)
  r = jax.random.split(jax.random.key(0), 2)
  batch = (jax.random.normal(r[0], (s["batch"], s["frames"], s["size"], s["size"],
                                    s["channels"])),
           jax.random.normal(r[1], (s["batch"], s["text"], s["width"])),
           jnp.ones((s["batch"], s["text"]), bool))
  state = dict(params=params, opt=tx.init(params))

  def one():
    state["params"], state["opt"], loss = step(state["params"], state["opt"], batch,
                                               jax.random.key(1))
    loss.block_until_ready()
  forward = dit_forward_flops(batch=s["batch"], frames=s["frames"],
                              tokens_per_frame=(s["size"] // s["patch"]) ** 2,
                              text_tokens=s["text"], width=s["width"], depth=s["depth"],
                              mlp_ratio=s["mlp_ratio"],
                              patch_dim=s["patch"] ** 2 * s["channels"], attention=attention)
  return one, train_step_flops(forward)


def run(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks peers")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--tiny", action="store_true", help="toy shape (smoke test)")
  args = parser.parse_args(argv)
  try:
    import torch
  except ImportError:
    raise SystemExit("python -m benchmarks peers needs torch and diffusers: "
                     "pip install -e '.[peers]'") from None
  from benchmarks.common import write
  from benchmarks.train_step import matmul_peak
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  s = TINY if args.tiny else SHAPE
  dtypes = args.dtypes.split(",")
  # name -> (step, flops per step); the vdm entry of each peer uses its attention layout.
  entries = {}
  for dtype in dtypes:
    for name, model, inputs, attention in _torch_models(s):
      step = _torch_step(model, inputs, dtype)
      entries[f"{name} {dtype}"] = (step, _torch_flops(step), attention)
    for attention in ("factorized", "full"):
      one, flops = _vdm_step(s, attention, dtype)
      one()  # compile
      entries[f"vdm {attention} {dtype}"] = (one, flops, attention)
  for step, _, _ in entries.values():  # warm-up: first-call costs (allocator, dispatch caches)
    step()
  times = {name: [] for name in entries}
  for _ in range(args.repeats):
    for name, (step, _, _) in entries.items():
      t0 = time.perf_counter()
      step()
      times[name].append(time.perf_counter() - t0)
  rows = []
  for name, (_, flops, attention) in entries.items():
    best, median = min(times[name]), statistics.median(times[name])
    rows.append(dict(model=name, gflop_per_step=flops / 1e9, best_s=best, median_s=median,
                     gflops_best=flops / best / 1e9, gflops_median=flops / median / 1e9))
  by_name = {r["model"]: r for r in rows}
  ratios = {}
  for dtype in dtypes:
    for peer, attention in (("Latte", "factorized"), ("Wan", "full")):
      ours, theirs = by_name[f"vdm {attention} {dtype}"], by_name[f"{peer} {dtype}"]
      ratios[f"vdm {attention} / {peer}, {dtype}"] = dict(
          best=ours["gflops_best"] / theirs["gflops_best"],
          median=ours["gflops_median"] / theirs["gflops_median"])
  a = torch.randn(2048, 2048)
  torch.mm(a, a)
  torch_peak = 0.0
  for _ in range(3):
    t0 = time.perf_counter()
    torch.mm(a, a)
    torch_peak = max(torch_peak, 2 * 2048 ** 3 / (time.perf_counter() - t0))
  jax_peak = matmul_peak(512 if args.tiny else 2048)
  write("peers" + ("_tiny" if args.tiny else ""), rows,
        dict(shape=s, ratios=ratios, repeats=args.repeats, torch=torch.__version__,
             torch_threads=torch.get_num_threads(), fp32_matmul_peak_gflops=dict(
                 jax=jax_peak / 1e9, torch=torch_peak / 1e9)))
  print("GFLOP/s ratios (vdm / peer, each model's own FLOPs):")
  for key, value in ratios.items():
    print(f"  {key}: best {value['best']:.2f}x, median {value['median']:.2f}x")
