"""Named model sizes on the spine's pipeline, from a CPU test model to public-model shapes.

Argument (`configs/model_sizes.py:NAME`):
  tiny      the test size (configs/spine.py:tiny's models);
  spine     the shipped model (configs/spine.py);
  small     DiT-S-shaped (width 384, 12 layers, 6 heads) with a T5-small-shaped encoder;
  base      DiT-B-shaped (768, 12, 12) with a T5-base-shaped encoder (768, 12 layers, 12 heads);
  wan1.3b   the Wan2.1-1.3B DiT's shape (width 1536, 30 layers, 12 heads, MLP 8960, patch 2,
            16 latent channels) with a T5-base-shaped encoder (Wan's umT5-XXL is 5.7B parameters,
            more than its DiT, and a separate choice).
Parameter counts follow `vdm.models.denoiser_param_count` (checked against the built modules in
tests/test_model_sizes.py). This DiT's block has three attentions (spatial, temporal, cross) and
its own adaLN modulation (9 x width^2), so a 'wan1.3b' block holds more than Wan's (one 3D self-
attention, one cross-attention, a shared modulation): same shape, about 2.3B parameters.
"""
from configs import spine

T5_SMALL = dict(width=512, depth=8, heads=8, mlp=1024, vocab_size=32128)  # v1.1: 6 heads of 64
T5_BASE = dict(width=768, depth=12, heads=12, mlp=2048, vocab_size=32128)

SIZES = {
    "small": dict(text=T5_SMALL, dit=dict(width=384, depth=12, heads=6, mlp_ratio=4.0)),
    "base": dict(text=T5_BASE, dit=dict(width=768, depth=12, heads=12, mlp_ratio=4.0)),
    "wan1.3b": dict(text=T5_BASE, dit=dict(width=1536, depth=30, heads=12,
                                           mlp_ratio=8960 / 1536, patch=2),
                    vae=dict(latent_channels=16)),
}


# The arguments `vdm models` lists (tiny and spine are configs/spine.py's).
NAMES = tuple(SIZES)


def get_config(arg: str | None = None):
  config = spine.named_size(arg, SIZES, source="configs/model_sizes.py", prefix="size")
  if arg in SIZES:
    config.dit.remat = "full"  # these do not fit a CPU's memory in training without it
    config.dit.qk_norm = True  # bounded attention logits, as large DiTs train with
  return config
