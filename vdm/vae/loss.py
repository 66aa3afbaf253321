"""The VAE training loss, as a pure function of (model, batch, rng) for the shared train loop."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vdm.nn import normalize_pixels


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)) per element; same shape as `mean`, always >= 0."""
  return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """mean(relu(1 - D(real))) + mean(relu(1 + D(fake))): zero once real > 1 and fake < -1."""
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """-mean(D(fake)): the decoder is rewarded for patches the discriminator scores as real."""
  return -jnp.mean(fake_logits)


# The weights are positional-or-keyword on purpose: nnx.value_and_grad binds the signature and
# rejects keyword-only parameters with defaults ("keyword arguments could not be resolved to
# positions"). Set them with `functools.partial(vae_loss, kl_weight=..., disc_weight=...)`; the
# train loop passes `critic` and `critic_active` positionally when it trains a discriminator.
def vae_loss(model, batch: dict, rng: jax.Array, critic=None, critic_active=True,
             kl_weight: float = 1e-6, disc_weight: float = 0.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L1 + MSE reconstruction plus a weak KL, for `nnx.value_and_grad(..., has_aux=True)`.

  Args:
    model: a `CausalVAE`.
    batch: {'video': uint8 [B, T, H, W, 3]}.
    rng: key for sampling z ~ q(z | x).
    critic: None, or a `PatchDiscriminator` whose hinge generator loss on the reconstruction
      is added with weight `disc_weight` while `critic_active` (a traced bool: step >= start).
    kl_weight: weight of the KL *summed over a clip's latent elements* relative to the
      reconstruction error *summed over a clip's pixel values*, the convention of the latent
      diffusion autoencoders (Rombach et al. 2022), whose default 1e-6 is kept: the KL only stops
      the latents drifting to huge scales, it is not meant to make them a good Gaussian. Both sums
      are divided by the pixel count so the loss reads on a per-pixel scale.

  Returns:
    (loss scalar, metrics) with metrics 'loss', 'recon_l1', 'recon_mse' (on [-1, 1] values),
    'kl' (nats per clip), 'psnr' (dB, of the reconstruction clipped to [-1, 1], peak-to-peak 2)
    and 'latent_std' (std of the posterior means, useful for choosing the diffusion latent scale).
  """
  video = normalize_pixels(batch["video"])
  recon, mean, logvar = model(video, rng=rng)
  err = recon.astype(jnp.float32) - video
  recon_l1 = jnp.mean(jnp.abs(err))
  recon_mse = jnp.mean(jnp.square(err))
  kl_per_clip = jnp.sum(gaussian_kl(mean, logvar), axis=tuple(range(1, mean.ndim))).mean()
  pixels_per_clip = video[0].size
  loss = recon_l1 + recon_mse + kl_weight * kl_per_clip / pixels_per_clip
  adversarial = {}
  if critic is not None:
    g_loss = hinge_generator_loss(critic(recon))
    loss = loss + jnp.where(critic_active, disc_weight, 0.0) * g_loss
    adversarial = {"g_loss": g_loss}

  # PSNR on what would be displayed, so an out-of-range decoder is not rewarded.
  clipped_mse = jnp.mean(jnp.square(jnp.clip(recon, -1.0, 1.0) - video))
  psnr = 10.0 * jnp.log10(4.0 / jnp.maximum(clipped_mse, 1e-10))
  metrics = {
      "loss": loss,
      "recon_l1": recon_l1,
      "recon_mse": recon_mse,
      "kl": kl_per_clip,
      "psnr": psnr,
      "latent_std": jnp.std(mean),
      **adversarial,
  }
  return loss, metrics
