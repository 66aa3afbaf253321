"""Temporal-consistency ablations on the spine's data and model, trained with Diffusion Forcing
(configs/parallel_vs_ar.py:forcing) so each runs every generation mode; one change per variant:

  baseline      factorized attention, global temporal attention, flow loss only
  full          full 3D attention instead of factorized (dit.attention = full)
  local         temporal attention window of 1 frame each side (dit.temporal_window = 1)
  consistency   + a loss on the predicted clip's frame-to-frame change
                (diffusion.temporal_consistency_weight = 1; vdm.diffusion.temporal_consistency_loss)
  motion        + the same loss along the exact ground-truth flow, on the latent grid (motion
                supervision: diffusion.motion_supervision_weight = 1; simple.latent_motion)

Arguments (`configs/temporal_ablations.py:VARIANT[,small|tiny]`; small is the default). Run and
compare them all with `python -m experiments.temporal_ablations`, or one by one with
`vdm eval --suite rollout --checkpoint W/model` (per-frame colour error, flicker, stalls and drift
at 1x-4x the training length).
"""
from configs import parallel_vs_ar

VARIANTS = ("baseline", "full", "local", "consistency", "motion")


NAMES = VARIANTS  # the arguments `vdm models` lists (at the default size)


def get_config(arg: str | None = None):
  variant, _, size = (arg or "baseline").partition(",")
  if variant not in VARIANTS or size not in ("", "small", "tiny"):
    raise ValueError(f"configs/temporal_ablations.py: argument {arg!r}: allowed "
                     f"VARIANT[,small|tiny] "
                     f"with VARIANT in {VARIANTS}")
  config = parallel_vs_ar.get_config("forcing" + (",tiny" if size == "tiny" else ""))
  config.name = f"temporal_{variant}"
  if variant == "full":
    config.dit.attention = "full"
  elif variant == "local":
    config.dit.temporal_window = 1
  elif variant == "consistency":
    config.diffusion.temporal_consistency_weight = 1.0
  elif variant == "motion":
    config.diffusion.motion_supervision_weight = 1.0
  return config
