"""Moving-MNIST 10 -> 10 video prediction through the extension mode (`vdm eval --suite
prediction`): 64x64 grey frames (stored as RGB), 2 bouncing digits, 20 frames; the first 10 are
given, the last 10 generated.

Temporal compression x1 (`vae.temporal_downsample = 1`). The causal VAE maps 1 + k * stride
frames to 1 + k latent frames, its first latent frame being frame 0 encoded alone. At stride 1
the 20 frames are 20 latent frames and latent frame j depends only on frames <= j, so the 10
given frames are exactly latent frames 0-9: encoding them alone gives the same latents as
encoding the whole clip, and the 10 generated latent frames decode to exactly the 10 predicted
frames. At stride 2, 20 frames do not fit 1 + 2k, and with 21 the latent frames cover frames
{0}, {1, 2}, ..., {9, 10}: a latent frame would straddle the last given frame and the first
predicted one (giving 11 frames would change the task). Stride 1 costs the DiT 20 token frames
instead of 11; 4x4 spatial compression and patch 4 (16 tokens a frame, 320 a clip) keep it
cheap: at patch 2 (1,280 tokens) a training step took 8x as long on this CPU.

Training: the VAE on 5-frame crops of the clips (`train.vae.crop_frames`; its causal convs see a
frame and a few before it, so short clips teach it what long ones would at a quarter of the
cost); the denoiser with the first 10 latent frames clean and unscored in every clip
(`diffusion.given_frames`, `given_prob`: extension training), so it learns exactly the mode the
suite samples. Captions name the digits, which the published predictors are never told: the
model is trained (almost, `text_dropout` 0.99) and scored without them (empty prompt,
guidance 1).

Arguments (`configs/moving_mnist.py:ARG`):
  (none)  the model trained on this repo's 2-core CPU in 18 minutes (README: Moving-MNIST).
  tiny    32x32, 4 frames (2 given, 2 predicted), seconds-long, for tests.
"""
from configs import spine


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/moving_mnist.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
  tiny = arg == "tiny"
  config = spine.get_config("tiny" if tiny else None)
  config.name = "moving_mnist"
  # height = width: the generator's `size` (vdm.data.kinds.build maps it).
  config.data.update(dict(kind="moving_mnist", height=64, width=64, frames=20, num_digits=2,
                          fps=10, num_train=10000, num_test=100, seed=0))
  config.prediction = dict(given_frames=10)  # pixel frames given; data.frames - 10 predicted
  config.vae.update(temporal_downsample=1, base_channels=8, channel_mult=(1, 2, 2),
                    latent_channels=4)
  config.text.update(vocab_size=64, max_length=16, width=32, depth=1, heads=2, mlp=64)
  config.dit.update(width=128, depth=4, heads=4, patch=4)
  config.diffusion.update(given_frames=10, given_prob=1.0, text_dropout=0.99)
  config.sample.update(steps=20, guidance=1.0, mode="parallel", resolution=64, seconds=2.0,
                       fps=10, max_frames=20)
  config.train.vae.update(steps=1000, batch_size=4, learning_rate=2e-3, crop_frames=5,
                          checkpoint_every=250)
  # 12 min on the shared 2-core CPU, over half of it encoding each batch with the VAE. EMA
  # decay 0.995 suits a short run (the loop's warm-up, (1 + step) / (10 + step), stays below it
  # for all 1,500 steps here, so 0.999 would give the same weights).
  config.train.dit.update(steps=1500, batch_size=8, learning_rate=8e-4, ema_decay=0.995,
                          checkpoint_every=250)
  if tiny:
    config.data.update(height=32, width=32, frames=4, num_train=8, num_test=2)
    config.prediction.given_frames = 2
    # The spine's tiny VAE and DiT shapes (only the time axis differs), so a test process that
    # built those has most initializer programs compiled already.
    config.vae.update(base_channels=8, channel_mult=(1, 2), latent_channels=8)
    config.dit.update(width=32, depth=1, heads=2, patch=2)
    config.diffusion.given_frames = 2
    config.sample.update(steps=3, resolution=32, seconds=0.4, max_frames=4)
    config.train.vae.update(steps=2, batch_size=2, crop_frames=2, log_every=1,
                            checkpoint_every=2)
    config.train.dit.update(steps=2, batch_size=2, log_every=1, checkpoint_every=2)
  return config
