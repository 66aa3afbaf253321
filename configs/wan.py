"""Wan2.1 text-to-video in vdm (docs/wan.md).

Argument (`configs/wan.py:NAME`):
  t2v-1.3b  Wan2.1-T2V-1.3B: DiT width 1536, 30 layers, 12 heads, MLP 8960 (1.42 B parameters),
            UMT5-XXL text encoder (5.7 B, frozen), Wan2.1's VAE (4x8x8, 16 channels); Wan's
            sampling defaults (50 steps, shift 5, guidance 5, its negative prompt, 81 frames at
            16 fps, 480p)
  t2v-14b   Wan2.1-T2V-14B: width 5120, 40 layers, 40 heads, MLP 13824
  tiny      the same layout at the size of the parity fixtures (tests/fixtures/wan), for tests
These are the shapes `vdm convert` / `vdm.Pipeline.load` give a downloaded Wan directory; the
weights come from the checkpoint (vdm/convert/wan.py), never from these files.
"""
from vdm.convert.wan import SIZES, wan_config


def tiny():
  config = wan_config("t2v-1.3b")
  config.name = "wan2.1-tiny"
  config.dit.update(width=32, heads=2, depth=2, mlp_width=48, time_freq_dim=16)
  config.text.update(width=24, depth=2, heads=6, mlp=40, vocab_rows=160, max_length=16)
  config.vae.update(base_channels=3, latent_channels=4)
  config.data.update(frames=17, height=32, width=32, num_train=64, num_test=8)
  config.sample.update(steps=4, resolution=32, aspect="1:1", max_frames=33, seconds=17 / 16,
                       negative_prompt="")
  return config


def get_config(arg: str | None = None):
  name = arg or "t2v-1.3b"
  if name == "tiny":
    return tiny()
  if name not in SIZES:
    raise ValueError(f"configs/wan.py: unknown argument {name!r}; allowed "
                     f"{[*SIZES, 'tiny']}")
  return wan_config(name)
