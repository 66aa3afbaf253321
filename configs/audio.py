"""Sound with the picture (docs/audio.md, experiments/audio/README.md): one model generates the
frames and the soundtrack of the scenes made for sound (`data.kind = sound_scenes`: a still
camera over a solid background, one object that bounces, slides or stands still; a click at
every bounce, a tone pitched by its colour and as loud as its speed, silence when still).
32x32, 17 frames at 8 fps, 16 kHz audio; the spine's text encoder, a narrower VAE and DiT, plus
an audio VAE (log-magnitude spectrogram, Griffin-Lim) and the DiT's audio token stream.

Arguments (`configs/audio.py:ARG`):
  (none)              the joint model.
  no_video_attention  the same without attention between audio and video tokens (the baseline:
                      audio from the text alone).
  tiny                seconds-long settings for tests (with ',no_video_attention' too).
"""
from configs import spine

ARGS = ("", "no_video_attention", "tiny", "tiny,no_video_attention")


def get_config(arg: str | None = None):
  arg = arg or ""
  if arg not in ARGS:
    raise ValueError(f"configs/audio.py: unknown argument {arg!r}; allowed: {ARGS}")
  tiny = arg.startswith("tiny")
  config = spine.get_config("tiny" if tiny else None)
  config.name = "audio" + ("_no_video_attention" if "no_video_attention" in arg else "")
  if tiny:
    config.data.update(kind="sound_scenes", height=16, width=16, frames=5, num_train=8,
                       num_test=4, num_long=0, max_objects=1, sample_rate=8000)
    config.audio.update(channels=16, latent_channels=4, griffin_lim_iters=4)
    config.train.audio.update(steps=4, batch_size=4, warmup_steps=1, log_every=2,
                              checkpoint_every=2)
  else:
    config.data.update(kind="sound_scenes", height=32, width=32, frames=17, num_train=6000,
                       num_test=128, num_long=0, max_objects=1, sample_rate=16000)
    # Sized for a shared 2-core CPU: half the spine's VAE width, trained on 9-frame crops (a
    # causal VAE is the same function of a frame and the few before it at any length), a
    # narrower DiT and smaller batches.
    config.vae.update(base_channels=8)
    config.train.vae.update(steps=1500, crop_frames=9)
    config.audio.update(channels=64)
    config.train.audio.update(steps=1500, batch_size=16)
    config.dit.update(width=128, heads=4)
    config.train.dit.update(steps=3000, batch_size=16)
  # The captions add a sound phrase (', with a low hum and clicks'); the tokenizer is trained on
  # this dataset's own captions.
  config.text.update(max_length=40 if not tiny else 32)
  config.audio.enabled = True
  config.audio.video_attention = "no_video_attention" not in arg
  config.sample.update(seconds=config.data.frames / config.data.fps,
                       max_frames=config.data.frames)
  return config
