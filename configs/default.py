"""The default model `vdm sample` uses (`checkpoints/default`): one text-to-video model for every
generation mode (parallel, autoregressive, rolling, image-to-video, keyframes first).

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
trains on cached latents (`train.dit.cache`). experiments/default/README.md has the cost and the
scores.

Arguments (`configs/default.py:ARG`):
  (none)  the shipped model.
  tiny    seconds-long settings for tests.
"""
from configs import spine


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/default.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
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
  else:
    config.vae.init_from = "checkpoints/spine"
    config.train.dit.update(steps=6000, eval_every=500, eval_num=32, checkpoint_every=250)
  return config
