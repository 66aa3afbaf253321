"""A candidate default model: one text-to-video model for every generation mode (parallel,
autoregressive, rolling, image-to-video, keyframes first), meant to replace `checkpoints/spine` as
what `vdm sample` uses once it passes the spine's adherence bars. It does not yet: trained 6,000
steps it learns colour but follows direction words at chance (experiments/default/README.md), so
`vdm sample` still defaults to `checkpoints/spine`.

The spine's world and sizes (configs/spine.py: a coloured shape on a flat background, 32x32, 9
frames at 8 fps, the spine's VAE, a 4-layer DiT) with three changes that make long clips hold:
  * Diffusion Forcing: an independent level per frame for half the clips, block-causal masks
    (chunks 1, 2, 4) for half the batches, so the same weights run parallel, autoregressive and
    rolling sampling;
  * wrapped clips (`data.wrap`): objects move on a torus, so "moving right" stays true, and
    checkable, for a clip of any length (the long-clip coherence suite, `vdm eval --suite
    coherence`);
  * rotary 3D positions (`dit.position='rope3d'`): attention sees only differences of frame
    positions, so the 100th chunk of a rollout looks to the model like the 2nd.
The VAE is the spine's (`vae.init_from`), trained on the same kind of frames; the denoiser
trains on cached latents (`train.dit.cache`). experiments/default/README.md has the cost, the
held-out scores during training and the level-sampling ablation (`diffusion.train_shift`).

Arguments (`configs/default.py:ARG`):
  (none)  the candidate at full size (6,000 DiT steps, 32 held-out prompts scored every 500).
  finetune  the same schemes as a fine-tune of the shipped spine (`init_from`), which already
          follows direction words: its sinusoidal positions (seen at random frame offsets up to
          32, so long rollouts stay in range) instead of rope3d, its VAE as it is, its text
          encoder as the start (trained on with the DiT), 2,000 DiT steps.
  tiny    seconds-long settings for tests.
"""
from configs import spine


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny", "finetune"):
    raise ValueError(f"configs/default.py: unknown argument {arg!r}; allowed: '', 'finetune' or "
                     "'tiny'")
  tiny = arg == "tiny"
  config = spine.get_config("tiny" if tiny else None)
  config.name = "default"
  config.data.update(wrap=True, num_train=32 if tiny else 10_000)
  config.dit.position = "rope3d"
  latent_frames = 1 + (config.data.frames - 1) // config.vae.temporal_downsample
  config.diffusion.update(per_frame_levels_prob=0.5, causal_prob=0.5,
                          causal_chunks=tuple(k for k in (1, 2, 4) if k < latent_frames))
  if tiny:
    config.dit.heads = 1  # rope3d needs an even head dimension >= 6: 32 / 1
  elif arg == "finetune":
    config.init_from = "checkpoints/spine"
    config.dit.position = "sincos"  # the spine's (rope3d would be new, untrained weights' input)
    config.diffusion.max_frame_offset = 32
    config.train.vae.steps = 0  # the spine's VAE as it is
    # EMA 0.995: over 2,000 steps 0.999 would still be mostly the spine's parallel-only weights.
    config.train.dit.update(steps=2000, learning_rate=3e-4, warmup_steps=50, ema_decay=0.995,
                            eval_every=250, checkpoint_every=250)
  else:
    config.vae.init_from = "checkpoints/spine"
    config.train.dit.update(steps=6000, eval_every=500, eval_num=32, checkpoint_every=250)
  return config
