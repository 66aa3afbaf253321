"""Wan2.1 text-to-video in vdm (docs/wan.md).

Argument (`configs/wan.py:NAME`):
  t2v-1.3b  Wan2.1-T2V-1.3B: DiT width 1536, 30 layers, 12 heads, MLP 8960 (1.42 B parameters),
            UMT5-XXL text encoder (5.7 B, frozen), Wan2.1's VAE (4x8x8, 16 channels); Wan's
            sampling defaults (50 steps, shift 5, guidance 5, its negative prompt, 81 frames at
            16 fps, 480p)
  t2v-14b   Wan2.1-T2V-14B: width 5120, 40 layers, 40 heads, MLP 13824
  tiny      the same layout at the size of the parity fixtures (tests/fixtures/wan), for tests
  self-forcing, causvid, causvid-4step
            t2v-1.3b sampled as those few-step autoregressive generators are: chunks of 3 latent
            frames with the KV cache, their step levels and shift, the `consistency` sampler, no
            guidance (`vdm convert WAN_DIR --generator CKPT --schedule NAME` gives a converted
            generator this sampling)
  finetune-forcing
            fine-tunes t2v-1.3b from its weights (set `init_from` to the downloaded directory)
            with Diffusion Forcing: a level per frame, and half the batches under block-causal
            masks of 3-frame chunks (CausVid's and SkyReels-V2's starting point), the text
            encoder frozen
  finetune-lora
            the same with LoRA (rank 32 on every attention and MLP layer of the blocks): only
            the LoRA matrices train; the exported model has them folded in
  tiny-finetune-forcing, tiny-finetune-lora
            those at the tiny size, starting from the fixtures' Wan directory, a few steps on
            the synthetic clips (tests/test_wan_train.py)
The shapes are those `vdm convert` / `vdm.Pipeline.load` give a downloaded Wan directory; the
weights come from the checkpoint (vdm/convert/wan.py), never from these files.
"""
import os

from vdm.convert.wan import GENERATORS, SIZES, generator_sampling, wan_config

# The arguments `vdm models` lists.
NAMES = (*SIZES, "tiny", *GENERATORS, "finetune-forcing", "finetune-lora", "tiny-finetune-forcing",
         "tiny-finetune-lora")

# The tiny fine-tunes start from the parity fixtures' Wan directory (original layout).
TINY_WAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                        "fixtures", "wan", "original")


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


def finetune(config, *, chunk: int, lora: bool):
  """Diffusion Forcing on top of a pretrained Wan model (`init_from`): an independent level per
  frame in half the clips, a block-causal mask of `chunk`-frame chunks in half the batches, so
  the fine-tuned model samples in every mode, autoregressive ones included."""
  config.name += "-finetune-lora" if lora else "-finetune-forcing"
  config.diffusion.update(per_frame_levels_prob=0.5, causal_prob=0.5, causal_chunks=(chunk,),
                          timestep_sampling="logit_normal")
  config.train.dit.update(steps=2000, batch_size=8, learning_rate=1e-5, warmup_steps=100,
                          weight_decay=0.0, ema_decay=0.999, checkpoint_every=250)
  config.sample.update(mode="autoregressive", chunk=chunk)
  config.train.vae.steps = 0  # Wan's VAE as it is
  if lora:
    config.dit.update(lora_rank=32, lora_alpha=32.0,
                      lora_targets=("q", "kv", "out", "fc1", "fc2"))
    config.train.dit.learning_rate = 1e-4
  return config


def tiny_finetune(lora: bool):
  config = finetune(tiny(), chunk=2, lora=lora)
  config.init_from = TINY_WAN
  config.data.update(num_train=8, num_test=2)
  config.train.dit.update(steps=2, batch_size=2, warmup_steps=1, log_every=1,
                          checkpoint_every=2)
  config.sample.update(steps=2, seconds=5 / 16, chunk=1)
  if lora:
    config.dit.update(lora_rank=4, lora_alpha=8.0)
    config.train.dit.learning_rate = 1e-2  # two steps must move the LoRA matrices visibly
  return config


def get_config(arg: str | None = None):
  name = arg or "t2v-1.3b"
  if name == "tiny":
    return tiny()
  if name in GENERATORS:
    config = wan_config("t2v-1.3b")
    config.name = f"wan2.1-t2v-1.3b-{name}"
    generator_sampling(config, name)
    return config
  if name in ("finetune-forcing", "finetune-lora"):
    return finetune(wan_config("t2v-1.3b"), chunk=3, lora=name == "finetune-lora")
  if name in ("tiny-finetune-forcing", "tiny-finetune-lora"):
    return tiny_finetune(lora=name == "tiny-finetune-lora")
  if name not in SIZES:
    raise ValueError(f"configs/wan.py: unknown argument {name!r}; allowed {list(NAMES)}")
  return wan_config(name)
