"""Text-to-video on the full synthetic benchmark (`data.kind = scenes`): 1-3 objects (shapes and
MNIST digits), textured backgrounds, camera pans and zooms, layered captions; the spine's models.

Arguments (`configs/scenes_t2v.py:ARG`):
  (none)  32x32, 17 frames at 8 fps (9 latent frames), 20,000 training clips.
  tiny    seconds-long settings for tests.
"""
from configs import spine


def get_config(arg: str | None = None):
  if arg not in (None, "", "tiny"):
    raise ValueError(f"configs/scenes_t2v.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
  config = spine.get_config("tiny" if arg == "tiny" else None)
  config.name = "scenes_t2v"
  size = dict(height=16, width=16, frames=5, num_train=16, num_test=4, num_long=2) if arg else \
      dict(height=32, width=32, frames=17, num_train=20000, num_test=256, num_long=64)
  config.data.update(dict(kind="scenes", long_factor=4, max_objects=3, **size))
  # Layered captions ("A red square moves left quickly while ... The camera pans left.") are
  # longer than the spine's; the tokenizer is trained on this dataset's own captions.
  config.text.update(vocab_size=512 if not arg else 256, max_length=64)
  config.sample.update(seconds=config.data.frames / config.data.fps,
                       max_frames=4 * (config.data.frames - 1) + 1)
  return config
