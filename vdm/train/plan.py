"""`vdm plan`: the memory one device needs to train the denoiser of a config, without allocating.

Parameters, optimizer moments and EMA come from `eval_shape` of the state the loop creates and
the shardings their logical names give on the mesh (bytes of each array's shard on one device);
activations, gradients and workspace are XLA's compiled memory analysis of the very step
`vdm train` runs (`vdm.train.loop.lower_train_step`), partitioned for the mesh. Nothing is
computed: the state and batch are ShapeDtypeStructs.

The mesh is the config's `parallel` section over the devices the process has; to plan for a
machine you do not have, simulate its device count on the CPU (`vdm plan --devices 8`, which sets
XLA's host device count): the partitioning is the same, the compiler's fusion choices (and so the
temporary bytes) are the CPU's, a fair estimate for GPUs and TPUs, not a promise.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp

from vdm.config.t2v import latent_frames_of
from vdm.parallel.placement import Placement

GiB = 2 ** 30
_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "KB": 2 ** 10, "KIB": 2 ** 10, "M": 2 ** 20, "MB": 2 ** 20,
          "MIB": 2 ** 20, "G": GiB, "GB": GiB, "GIB": GiB, "T": 2 ** 40, "TB": 2 ** 40,
          "TIB": 2 ** 40}


def parse_bytes(text: str) -> int:
  """'80GB', '80 GiB', '16G', '512MB' -> bytes (binary units: a GPU's '80GB' is 80 GiB)."""
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text or "")
  if not match or match.group(2).upper() not in _UNITS:
    raise ValueError(f"--device-memory {text!r}: expected a size such as 80GB, 16GiB or 512MB")
  return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def shard_bytes(tree) -> int:
  """Bytes one device holds of the ShapeDtypeStructs (with shardings) of `tree`: the largest
  device's share of each array."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
  return total


@dataclasses.dataclass
class MemoryPlan:
  """Bytes per device of one setting of the denoiser stage."""
  setting: str      # what differs from the config: mesh, remat, batch, accumulate, precision
  devices: int
  params: int       # fp32 master parameters
  optimizer: int    # AdamW moments and step counts (the loop's step counter included)
  ema: int          # the EMA of the parameters
  batch: int        # one global batch's share (latents, token ids)
  temp: int         # XLA's temporary buffers: activations, gradients, workspace
  arguments: int    # XLA's argument bytes (state + batch), for the check against the above
  code: int         # generated code

  @property
  def state(self) -> int:
    return self.params + self.optimizer + self.ema

  @property
  def peak(self) -> int:
    """State and batch (donated: the new state reuses them) plus the temporaries."""
    return self.arguments + self.temp + self.code

  def fits(self, device_memory: int) -> bool:
    return self.peak <= device_memory


def denoiser_batch_shapes(config) -> dict:
  """{name: (shape, dtype)} of the global batch the denoiser stage trains on (what
  `vdm.train.run`'s prepare_batch makes: normalised latents, token ids and masks)."""
  b = config.train.dit.batch_size
  s = 2 ** (len(config.vae.channel_mult) - 1)  # the VAE's spatial downsampling
  latents = (b, latent_frames_of(config, config.data.frames), config.data.height // s,
             config.data.width // s, config.vae.latent_channels)
  tokens = (b, config.text.max_length)
  shapes = dict(latents=(latents, jnp.float32), ids=(tokens, jnp.int32), mask=(tokens, bool),
                empty_ids=(tokens, jnp.int32), empty_mask=(tokens, bool))
  if config.diffusion.motion_supervision_weight:
    t, h, w = latents[1:4]
    shapes.update(latent_flow=((b, t - 1, h, w, 2), jnp.float32),
                  flow_valid=((b, t - 1, h, w), jnp.float32))
  return shapes


def plan_denoiser(config, setting: str = "as configured") -> MemoryPlan:
  """The MemoryPlan of the config's denoiser stage on the mesh of config.parallel."""
  from vdm.models import build_denoiser
  from vdm.train.loop import lower_train_step
  from vdm.train.objectives import denoiser_loss
  placement = Placement.from_config(config.parallel, config.dit.attention, verbose=False)
  cfg = config.train.dit
  placement.check_batch(cfg.batch_size, "train.dit.batch_size", cfg.accumulate)
  init = functools.partial(build_denoiser, config, config.text.vocab_size, config.seed + 1)
  loss = functools.partial(denoiser_loss, cfg=config.diffusion,
                           temporal_patch=config.dit.temporal_patch)
  batch = placement.abstract_batch(denoiser_batch_shapes(config))
  frozen = ("text",) if config.text.freeze else ()
  lowered, state = lower_train_step(init, loss, cfg, placement, batch, frozen=frozen)
  memory = lowered.compile().memory_analysis()
  return MemoryPlan(
      setting=setting, devices=placement.mesh.size, params=shard_bytes(state["params"]),
      optimizer=shard_bytes(state["opt_state"]) + shard_bytes(state["step"]),
      ema=shard_bytes(state["ema"]), batch=shard_bytes(batch),
      temp=int(memory.temp_size_in_bytes), arguments=int(memory.argument_size_in_bytes),
      code=int(memory.generated_code_size_in_bytes))


def grid_settings(config, devices: int) -> list[tuple[str, list[str]]]:
  """(label, --set overrides) of the settings `vdm plan --grid` compares: every remat policy
  with the config's mesh, and FSDP over 1, 2, 4, ... of the devices (data parallel over the
  rest) with full remat."""
  out = [(f"remat {r}", [f"dit.remat={r!r}"]) for r in ("none", "dots", "full")]
  fsdp = 2
  while fsdp <= devices:
    if devices % fsdp == 0:
      out.append((f"fsdp {fsdp} x data {devices // fsdp}, remat full",
                  [f"parallel.fsdp={fsdp}", "parallel.data=-1", "parallel.tensor=1",
                   "parallel.sequence=1", "dit.remat='full'"]))
    fsdp *= 2
  return out


def format_table(plans: list[MemoryPlan], device_memory: int | None) -> str:
  """A markdown table of plans, GiB per device, with a 'fits' column when given a memory."""
  head = "| setting | params | optimizer | EMA | batch | activations + temp | peak |"
  rule = "|---|---|---|---|---|---|---|"
  if device_memory:
    head += f" fits {device_memory / GiB:.0f} GiB |"
    rule += "---|"
  rows = [head, rule]
  g = lambda n: f"{n / GiB:.2f}"  # noqa: E731
  for p in plans:
    row = (f"| {p.setting} | {g(p.params)} | {g(p.optimizer)} | {g(p.ema)} | {g(p.batch)} | "
           f"{g(p.temp)} | {g(p.peak)} |")
    if device_memory:
      row += f" {'yes' if p.fits(device_memory) else 'no'} |"
    rows.append(row)
  return "\n".join(rows)
