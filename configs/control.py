"""Control: a denoiser conditioned on object trajectories and camera paths as well as text, on
the scenes benchmark (`data.kind = scenes`: one object, every background and camera move).

The recorded ground truth of every clip (object centres, camera path) is the conditioning; each
is dropped at random in training (`control.dropout`), so the model still runs from text alone
and text-only generation of the same prompts is the baseline (experiments/control/README.md).

The full size fine-tunes the shipped Diffusion Forcing model (`init_from`:
checkpoints/spine_forcing, same shapes: its tokenizer, VAE, text encoder and DiT), so the same
weights run parallel, autoregressive and rolling generation and prompt timelines; the control
inputs start at zero. The machine it was trained on is a shared 2-core CPU: the budget is small.

Arguments (`configs/control.py:ARG[,tiny]`):
  (none)     32x32, 9 frames at 8 fps (5 latent frames), 20,000 training clips.
  timelines  prompt timelines instead of paths: the spine's clips, half of them with their
             object changing colour at a random latent frame and the caption changing with it
             (`control.prompt_switch_prob`), a fine-tune of spine_forcing.
  tiny       seconds-long settings for tests (trained from scratch).
"""
from configs import spine


def get_config(arg: str | None = None):
  options = set((arg or "").split(",")) - {""}
  if not options <= {"tiny", "timelines"}:
    raise ValueError(f"configs/control.py: unknown argument {arg!r}; allowed: '', 'timelines', "
                     "'tiny' or 'timelines,tiny'")
  tiny = "tiny" in options
  if "timelines" in options:
    return _timelines(tiny)
  config = spine.get_config("tiny" if tiny else None)
  config.name = "control"
  size = dict(height=16, width=16, frames=5, num_train=16, num_test=4) if tiny else \
      dict(height=32, width=32, frames=9, num_train=20000, num_test=256)
  config.data.update(dict(kind="scenes", max_objects=1, num_long=0, **size))
  # Scenes captions are longer than the spine's (the camera, the background's two colours).
  config.text.max_length = 64
  # Half the clips whose camera path is given lose the caption's camera clause: every scenes
  # caption names its move (silence: a still camera), so whole captions alone taught the model
  # to read the move from the words and ignore the path (0.69 vs 0.69 px/step at 3,000 steps).
  config.control.update(trajectory=True, camera=True, objects=config.data.max_objects,
                        sigma=1.0 if tiny else 1.5, dropout=0.3, camera_caption_dropout=0.5)
  _diffusion_forcing(config)
  if not tiny:
    config.init_from = "checkpoints/spine_forcing"
    # A short fine-tune for a shared 2-core CPU (a DiT step at batch 12: 0.37 s quiet).
    config.train.vae.update(steps=200, learning_rate=5e-4, warmup_steps=20, log_every=25,
                            checkpoint_every=100)
    # EMA decay 0.99 (not 0.999): over a few hundred steps the slower average would still be
    # mostly the initial weights, whose control inputs are zero.
    config.train.dit.update(steps=3000, batch_size=12, learning_rate=8e-4, warmup_steps=30,
                            ema_decay=0.99, log_every=25, checkpoint_every=50)
  return config


def _timelines(tiny: bool):
  """Prompt timelines on the spine's world: colour switches drawn into its clips (the eval's
  timeline cases switch colour too, on held-out compositions)."""
  config = spine.get_config("tiny" if tiny else None)
  config.name = "control_timelines"
  config.control.prompt_switch_prob = 0.5
  _diffusion_forcing(config)
  if not tiny:
    config.init_from = "checkpoints/spine_forcing"
    config.data.num_train = 20000  # spine_forcing's clips
    config.train.vae.steps = 0  # spine_forcing's VAE as it is
    config.train.dit.update(steps=1500, batch_size=16, learning_rate=3e-4, warmup_steps=30,
                            ema_decay=0.99, log_every=25, checkpoint_every=100, eval_every=500)
  return config


def _diffusion_forcing(config) -> None:
  """spine_forcing's schemes (configs/parallel_vs_ar.py:forcing): per-frame levels and
  block-causal masks, so autoregressive and rolling timelines run on the same weights; clips
  of the training length, up to four times that."""
  latent_frames = 1 + (config.data.frames - 1) // config.vae.temporal_downsample
  config.diffusion.update(per_frame_levels_prob=0.5, causal_prob=0.5, max_frame_offset=32,
                          causal_chunks=tuple(k for k in (1, 2, 4) if k < latent_frames))
  config.sample.update(seconds=config.data.frames / config.data.fps,
                       max_frames=4 * (config.data.frames - 1) + 1)
