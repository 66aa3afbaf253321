"""Few-step students of a trained model (the `distill` task, vdm/train/distill.py): one recipe
per variant, each through the one training loop, the teacher a model directory.

Arguments (`configs/fast.py:VARIANT[,tiny]`):
  guidance         guidance distillation: the scale as an input, one forward instead of two
  shortcut         a shortcut student: the step size as an input, 1-4 (or any) Euler steps
  ode_init         regression on the teacher's ODE trajectories (4 steps), generated first
  ode_init_ar      the same per chunk under a block-causal mask: an autoregressive student's init
  dmd              distribution matching, from the ode_init student (train it first)
  self_forcing     DMD on the autoregressive student's own KV-cached rollouts, from ode_init_ar
  self_forcing_long  the same rolled out 4x the training length, a random window scored
  finetune         the teacher's own Diffusion Forcing loss continued (the equal-compute baseline)
  finetune_tf      the same with teacher forcing
  tiny             seconds-long settings for tests (use with --set teacher=DIR of a tiny model)
The teacher defaults to checkpoints/spine_forcing (`--set teacher=DIR` for another); students
that start from another student read it from workdirs/fast/<variant>/model (`--set init_from=`).

  vdm train --config configs/fast.py:ode_init --workdir workdirs/fast/ode_init
  vdm train --config configs/fast.py:dmd --workdir workdirs/fast/dmd
"""
import ml_collections

from vdm.config import defaults

VARIANTS = ("guidance", "shortcut", "ode_init", "ode_init_ar", "dmd", "self_forcing",
            "self_forcing_long", "finetune", "finetune_tf")
# A student that starts from another: the workdir `vdm train` wrote that one to (README's).
STARTS_FROM = dict(dmd="ode_init", self_forcing="ode_init_ar", self_forcing_long="ode_init_ar")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, *options = (arg or "dmd").split(",")
  if variant not in VARIANTS or not set(options) <= {"tiny"}:
    raise ValueError(f"configs/fast.py: argument {arg!r}: allowed VARIANT[,tiny] with VARIANT "
                     f"in {VARIANTS}")
  config = defaults("distill")
  config.name = f"fast_{variant}"
  config.recipe = {"ode_init_ar": "ode_init", "self_forcing_long": "self_forcing",
                   "finetune_tf": "finetune"}.get(variant, variant)
  config.finetune.teacher_forcing = variant == "finetune_tf"
  if variant == "ode_init_ar":
    config.ode.causal = True
  if variant == "self_forcing_long":
    config.self_forcing.rollout = 4
  if variant in STARTS_FROM and "tiny" not in options:
    config.init_from = f"workdirs/fast/{STARTS_FROM[variant]}/model"
  if variant == "guidance":  # scales drawn in [1, 6]: the teacher's default 4 inside
    config.update(guidance=6.0, guidance_min=1.0)
  if variant in ("guidance", "shortcut", "finetune", "finetune_tf"):
    config.train.update(steps=400, learning_rate=2e-4)
  if "tiny" in options:
    config.train.update(steps=2, batch_size=2, warmup_steps=1, log_every=1, checkpoint_every=2)
    config.ode.update(pairs=4, teacher_steps=4, batch_size=2)
    config.shortcut.max_steps = 4
  return config
