"""vdm: text-to-video latent diffusion in JAX/Flax.

The spine: prompt -> tokenizer -> text encoder -> sampler(DiT, noise-level matrix) -> VAE decoder -> frames.
`vdm.Pipeline.load(DIR)(prompt, seed=...)` returns uint8 frames [T, H, W, 3].
"""

__version__ = "0.1.0"


def __getattr__(name):
  # Lazy so that `import vdm` stays cheap and sub-packages (data, diffusion) import without Flax models.
  if name == "Pipeline":
    from vdm.generate.pipeline import Pipeline
    return Pipeline
  raise AttributeError(f"module 'vdm' has no attribute {name!r}")
