"""Parallel vs autoregressive generation: three denoisers at equal compute on the spine's data.

All three share the spine's data, tokenizer, VAE and DiT shape; only how training picks noise
levels and temporal masks differs (see `vdm.train.objectives`):
  shared    one level per clip, full attention: the usual parallel model;
  forcing   Diffusion Forcing: a level per frame (half the clips), block-causal masks (half the
            batches, chunks 1/2/4): one model for parallel, autoregressive and rolling sampling;
  teacher   teacher forcing: clean earlier chunks, one noisy chunk scored, block-causal always:
            the usual autoregressive model.
Every variant trains frame positions from a random offset (0..32), so clips up to 8x the training
length run autoregressively with positions the model has seen.

Arguments (`configs/parallel_vs_ar.py:VARIANT[,SIZE]`): VARIANT in shared|forcing|teacher;
SIZE small (default; this CPU, about 25 minutes per variant alone, 45 for all three at once) or tiny (seconds, for tests).
"""
from configs import spine

VARIANTS = ("shared", "forcing", "teacher")
SIZES = ("small", "tiny")


NAMES = VARIANTS  # the arguments `vdm models` lists (at the default size)


def get_config(arg: str | None = None):
  variant, _, size = (arg or "forcing").partition(",")
  size = size or "small"
  if variant not in VARIANTS or size not in SIZES:
    raise ValueError(f"configs/parallel_vs_ar.py: argument {arg!r}: allowed VARIANT[,SIZE] with "
                     f"VARIANT in {VARIANTS} and SIZE in {SIZES}")
  config = spine.get_config("tiny" if size == "tiny" else None)
  config.name = f"parallel_vs_ar_{variant}"
  d = config.diffusion
  latent_frames = 1 + (config.data.frames - 1) // config.vae.temporal_downsample
  chunks = tuple(k for k in (1, 2, 4) if k < latent_frames)
  d.max_frame_offset = 32
  if variant == "forcing":
    d.update(per_frame_levels_prob=0.5, causal_prob=0.5, causal_chunks=chunks)
  elif variant == "teacher":
    d.update(teacher_forcing=True, causal_prob=1.0, causal_chunks=chunks)
  if size == "small":
    config.train.dit.steps = 2000  # equal for every variant: the compared budget
  return config
