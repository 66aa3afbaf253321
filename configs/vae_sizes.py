"""Named causal-VAE sizes on the spine's pipeline, from the test VAE to public-model compressions.

Argument (`configs/vae_sizes.py:NAME`):
  tiny   the test VAE (configs/spine.py:tiny);
  spine  the shipped VAE: 2x in time, 4x4 in space, 8 latent channels (configs/spine.py);
  wan    Wan2.1-VAE-like: 4x in time, 8x8 in space, 16 latent channels, widths 96-192-384-384,
         two residual blocks per level, per-position RMS norm as Wan's (a 17-frame 64x64 clip
         -> 5 x 8 x 8 x 16 latents);
  ltx    LTX-Video-like high compression: 8x in time, 32x32 in space, 128 latent channels
         (1:192 of the pixel values, as LTX-Video's), DiT patch 1 as LTX-Video's (a 17-frame
         64x64 clip -> 3 x 2 x 2 x 128 latents). LTX-Video reaches 32x with a 4x4 space-to-depth
         step and fewer conv levels; here it is five stride-2 levels, the same causal VAE.
Compression factors and parameter counts (`vdm.vae.model.param_count`, checked against the built
modules) are tested in tests/test_vae_sizes.py. Data and sampling sizes are changed only as far as
validation needs (frames 1 + k * temporal_downsample, sides a multiple of the VAE stride x patch).
"""
from configs import spine

SIZES = {
    "wan": dict(vae=dict(base_channels=96, channel_mult=(1, 2, 4, 4), latent_channels=16,
                         temporal_downsample=4, num_res_blocks=2, norm="rms")),
    "ltx": dict(vae=dict(base_channels=64, channel_mult=(1, 2, 4, 4, 8, 8), latent_channels=128,
                         temporal_downsample=8, num_res_blocks=2),
                dit=dict(patch=1),
                data=dict(height=64, width=64),
                sample=dict(resolution=64)),
}


# The arguments `vdm models` lists (tiny and spine are configs/spine.py's).
NAMES = tuple(SIZES)


def get_config(arg: str | None = None):
  return spine.named_size(arg, SIZES, source="configs/vae_sizes.py", prefix="vae")
