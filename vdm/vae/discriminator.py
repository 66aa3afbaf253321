"""An optional adversarial loss for the VAE: a small 3D conv patch discriminator with hinge losses.

Pixel losses (L1 + MSE) make a VAE average what it cannot place exactly, which reads as blur; a
discriminator that scores local space-time patches as real or decoded pushes the decoder towards
sharp, temporally coherent texture (the VQGAN / latent-diffusion autoencoder recipe, in 3D).
It is off by default (`vae.disc_weight = 0`), and then nothing here is built or run.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.nn import normalize_pixels
from vdm.vae.loss import hinge_discriminator_loss


class PatchDiscriminator(nnx.Module):
  """Video [B, T, H, W, 3] in [-1, 1] -> patch logits [B, T', H/8, W/8, 1] (> 0: looks real).

  Three strided 3D convolutions with leaky ReLU (time is halved once, space three times), then a
  3x3x3 conv to one logit per space-time patch. No normalisation over the batch, so a real and a
  fake batch are scored independently.
  """

  def __init__(self, channels: int = 32, *, rngs: nnx.Rngs):
    widths = (channels, 2 * channels, 4 * channels)
    strides = ((1, 2, 2), (2, 2, 2), (1, 2, 2))
    convs, prev = [], 3
    for w, s in zip(widths, strides):
      convs.append(nnx.Conv(prev, w, (3, 4, 4), strides=s, padding="SAME", rngs=rngs))
      prev = w
    self.convs = nnx.List(convs)
    self.out = nnx.Conv(prev, 1, (3, 3, 3), padding="SAME", rngs=rngs)

  def __call__(self, video: jax.Array) -> jax.Array:
    h = video
    for conv in self.convs:
      h = nnx.leaky_relu(conv(h), 0.2)
    return self.out(h)


def discriminator_loss(disc, vae, batch: dict, rng: jax.Array
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The discriminator's loss for the train loop's critic step (gradients w.r.t. `disc` only).

  The reconstruction is recomputed with the same `rng` as the VAE's own loss, so it is the same
  sample the generator term scored; `stop_gradient` keeps the VAE out of this step.
  """
  video = normalize_pixels(batch["video"])
  recon = jax.lax.stop_gradient(vae(video, rng=rng)[0])
  real, fake = disc(video), disc(recon)
  loss = hinge_discriminator_loss(real, fake)
  return loss, {"d_loss": loss, "d_real": jnp.mean(real), "d_fake": jnp.mean(fake)}
