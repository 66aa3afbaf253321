"""Recipes for `vdm train` beyond one device: a mesh (`parallel`), memory options and a size.

Arguments (`configs/scale.py:NAME`; docs/scaling.md has the commands):
  cpu8          the tiny model on 8 simulated CPU devices, fsdp 4 x tensor 2 (run here: the
                tests train it and compare with one device);
  wan1.3b_480p  the wan1.3b DiT (configs/model_sizes.py) with the Wan-like VAE
                (configs/vae_sizes.py:wan) on 832x480 clips of 81 frames at 16 fps: 21 x 60 x 104
                latents, 1,560 tokens per frame; one device, the base of the three below and of
                the `vdm plan` table (bf16, full remat, scanned layers);
  gpu8          wan1.3b_480p on one node of 8 GPUs with 80 GB: FSDP over the 8 devices, a global
                batch of 8 (not run here: no GPU was lent);
  tpu_v5e       wan1.3b_480p on a TPU v5e-32 slice (32 chips of 16 GB, 8 hosts): FSDP over 16
                chips x data 2, a global batch of 32 (not run here);
  tpu_v5p       wan1.3b_480p on a TPU v5p-32 slice (16 chips of 95 GB, 4 hosts): FSDP over 4 x
                data 4, a global batch of 32 (not run here).
The meshes follow `vdm plan` (docs/scaling.md): the 2.44B-parameter state (fp32 weights, AdamW
moments and EMA: 39 GB) must be split before activations fit.
"""
import ml_collections

from configs import model_sizes, spine, vae_sizes


def wan_480p() -> ml_collections.ConfigDict:
  config = model_sizes.get_config("wan1.3b")
  config.name = "scale_wan1.3b_480p"
  config.vae.update(vae_sizes.SIZES["wan"]["vae"])
  config.data.update(height=480, width=832, frames=81, fps=16)
  config.sample.update(resolution=480, aspect="16:9", fps=16, seconds=81 / 16, max_frames=81)
  config.dit.update(scan_layers=True, remat="full")
  config.train.dit.update(precision="bfloat16", batch_size=1)
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg == "cpu8":
    config = spine.get_config("tiny")
    config.parallel.update(fsdp=4, tensor=2)
    return config
  if arg in ("wan1.3b_480p", "gpu8", "tpu_v5e", "tpu_v5p"):
    config = wan_480p()
    if arg == "gpu8":
      config.parallel.update(data=1, fsdp=-1)
      config.train.dit.batch_size = 8
    elif arg == "tpu_v5e":
      config.parallel.update(data=-1, fsdp=16)
      config.train.dit.batch_size = 32
    elif arg == "tpu_v5p":
      config.parallel.update(data=-1, fsdp=4)
      config.train.dit.batch_size = 32
    return config
  raise ValueError(f"configs/scale.py: unknown argument {arg!r}; allowed cpu8, wan1.3b_480p, "
                   "gpu8, tpu_v5e, tpu_v5p")
