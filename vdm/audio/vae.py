"""The audio VAE: a causal 1D convolutional VAE over log-magnitude spectrogram frames, decoded to
a waveform by Griffin-Lim (no learned vocoder).

Why magnitudes and not the waveform: the soundtracks' content (which pitches, how loud, when a
click starts) is all in the magnitudes; a waveform VAE would spend its capacity, and this CPU's
training time, on phase, which nobody hears in a steady tone and which the sync measures ignore.
The price is that a decoded waveform matches the input only up to phase (SI-SNR means little;
log-spectral error and onset timing are what the VAE eval reports), and Griffin-Lim smears a
click by up to a window (31 ms at the defaults), a quarter of a video frame at 8 fps.

Time: the STFT has one frame per `hop` samples (`vdm.audio.spectrogram`, causal framing), and
latent frame j summarises spectrogram frames [j td, (j + 1) td) (td = temporal_downsample): every
convolution is causal (left padding only), so latent frame j never sees a later sample than
(j + 1) td hop. At the defaults (16 kHz, hop 250, td 4) that is 16 latent frames a second, 2 per
video frame at 8 fps.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vdm.audio import spectrogram
from vdm.vae.loss import gaussian_kl
from vdm.vae.model import PixelRMSNorm

_LOGVAR_RANGE = (-30.0, 20.0)
TEMPORAL_DOWNSAMPLES = (1, 2, 4, 8)  # each x2 is one stride-2 causal step


class CausalConv1d(nnx.Module):
  """Convolution over [B, S, C] in time, padded on the left only: output frame j reads input
  frames j stride + stride - kernel ... j stride + stride - 1 (zeros before the clip), so with
  stride 2 output j summarises inputs 2j and 2j + 1 and what came before."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, *,
               rngs: nnx.Rngs):
    if kernel < stride:
      raise ValueError(f"kernel {kernel} must be >= stride {stride}")
    self.kernel_size, self.stride = kernel, stride
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (kernel, in_channels, out_channels)))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, S, Cin] (S a multiple of stride) -> [B, S / stride, Cout]."""
    x = jnp.pad(x, ((0, 0), (self.kernel_size - self.stride, 0), (0, 0)))
    y = jax.lax.conv_general_dilated(x, self.kernel[...], (self.stride,), "VALID",
                                     dimension_numbers=("NWC", "WIO", "NWC"))
    return y + self.bias[...]


class ResBlock1d(nnx.Module):
  """(RMS norm, SiLU, causal conv) x 2 plus the identity."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.norm1 = PixelRMSNorm(channels, rngs=rngs)
    self.conv1 = CausalConv1d(channels, channels, rngs=rngs)
    self.norm2 = PixelRMSNorm(channels, rngs=rngs)
    self.conv2 = CausalConv1d(channels, channels, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.conv1(nnx.silu(self.norm1(x)))
    return x + self.conv2(nnx.silu(self.norm2(h)))


class AudioVAE(nnx.Module):
  """Log-magnitude features [B, S, n_fft // 2 + 1] <-> latents [B, S / td, latent_channels].

  Args:
    n_fft, hop: the STFT (n_fft = 2 or 4 hops).
    channels: width of every layer.
    latent_channels: channels per latent frame.
    temporal_downsample: spectrogram frames per latent frame, 1, 2, 4 or 8.
    num_res_blocks: residual blocks at each time resolution, in the encoder and the decoder.
  """

  def __init__(self, *, n_fft: int, hop: int, channels: int, latent_channels: int,
               temporal_downsample: int, num_res_blocks: int = 1, rngs: nnx.Rngs):
    spectrogram.check_framing(n_fft, hop)
    if temporal_downsample not in TEMPORAL_DOWNSAMPLES:
      raise ValueError(f"audio.temporal_downsample must be one of {TEMPORAL_DOWNSAMPLES}, got "
                       f"{temporal_downsample}")
    for name, value in (("channels", channels), ("latent_channels", latent_channels),
                        ("num_res_blocks", num_res_blocks)):
      if value < 1:
        raise ValueError(f"audio.{name} must be >= 1, got {value}")
    self.n_fft, self.hop = n_fft, hop
    self.temporal_downsample, self.latent_channels = temporal_downsample, latent_channels
    bins = n_fft // 2 + 1
    steps = temporal_downsample.bit_length() - 1  # log2
    res = lambda: [ResBlock1d(channels, rngs=rngs) for _ in range(num_res_blocks)]  # noqa: E731
    self.enc_in = CausalConv1d(bins, channels, rngs=rngs)
    self.enc_blocks = nnx.List([nnx.List(res()) for _ in range(steps + 1)])
    self.downs = nnx.List([CausalConv1d(channels, channels, 4, 2, rngs=rngs)
                           for _ in range(steps)])
    self.enc_norm = PixelRMSNorm(channels, rngs=rngs)
    self.enc_out = CausalConv1d(channels, 2 * latent_channels, 1, rngs=rngs)
    # The posterior starts narrow (std e^-3): with unit-variance noise on latents of std ~0.5 the
    # untrained decoder learns to ignore them, and training sat on a plateau for ~100s of steps.
    self.enc_out.bias[...] = jnp.concatenate([jnp.zeros(latent_channels),
                                              jnp.full(latent_channels, -6.0)])
    self.dec_in = CausalConv1d(latent_channels, channels, rngs=rngs)
    self.dec_blocks = nnx.List([nnx.List(res()) for _ in range(steps + 1)])
    self.ups = nnx.List([CausalConv1d(channels, channels, rngs=rngs) for _ in range(steps)])
    self.dec_norm = PixelRMSNorm(channels, rngs=rngs)
    self.dec_out = CausalConv1d(channels, bins, rngs=rngs)

  @classmethod
  def from_config(cls, cfg, *, rngs: nnx.Rngs) -> "AudioVAE":
    """Builds from the config's `audio` section (vdm/config/t2v.py documents each field)."""
    return cls(n_fft=cfg.n_fft, hop=cfg.hop, channels=cfg.channels,
               latent_channels=cfg.latent_channels, temporal_downsample=cfg.temporal_downsample,
               num_res_blocks=cfg.num_res_blocks, rngs=rngs)

  @property
  def samples_per_latent(self) -> int:
    return self.hop * self.temporal_downsample

  def latent_frames(self, num_samples: int) -> int:
    """Latent frames of a waveform of `num_samples` (a multiple of samples_per_latent)."""
    if num_samples < 1 or num_samples % self.samples_per_latent:
      raise ValueError(f"audio of {num_samples} samples: the audio VAE needs a multiple of "
                       f"{self.samples_per_latent} (audio.hop x audio.temporal_downsample)")
    return num_samples // self.samples_per_latent

  def features(self, audio: jax.Array) -> jax.Array:
    """Waveform [B, N] in [-1, 1] -> log-magnitude features [B, N / hop, bins]."""
    self.latent_frames(audio.shape[-1])
    return spectrogram.features(audio, self.n_fft, self.hop)

  def encode(self, feats: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Features [B, S, bins] -> (mean, logvar), each [B, S / td, latent_channels]."""
    # Offset so silence (-1, most bins of these sounds) is 0 in and out: the untrained decoder
    # then starts at silence and only the few sounding bins have to be learned.
    h = self.enc_in(feats + 1.0)
    for i, blocks in enumerate(self.enc_blocks):
      for block in blocks:
        h = block(h)
      if i < len(self.downs):
        h = self.downs[i](h)
    mean, logvar = jnp.split(self.enc_out(nnx.silu(self.enc_norm(h))), 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  def decode(self, z: jax.Array) -> jax.Array:
    """Latents [B, S', latent_channels] -> features [B, S' td, bins] (unbounded; ~[-1, 1])."""
    if z.ndim != 3 or z.shape[-1] != self.latent_channels:
      raise ValueError(f"audio latents must be [B, S, {self.latent_channels}], got {z.shape}")
    h = self.dec_in(z)
    for i, blocks in enumerate(self.dec_blocks):
      for block in blocks:
        h = block(h)
      if i < len(self.ups):  # frame j -> frames 2j, 2j + 1, then a causal conv
        h = self.ups[i](jnp.repeat(h, 2, axis=1))
    return self.dec_out(nnx.silu(self.dec_norm(h))) - 1.0

  def encode_audio(self, audio: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Waveform [B, N] -> (mean, logvar) [B, N / samples_per_latent, latent_channels]."""
    return self.encode(self.features(audio))

  def decode_audio(self, z: jax.Array, *, iterations: int = 64) -> jax.Array:
    """Latents [B, S', latent_channels] -> waveform [B, S' samples_per_latent] in [-1, 1]
    (Griffin-Lim from the decoded magnitudes)."""
    mags = spectrogram.magnitudes_of(self.decode(z), self.n_fft)
    return jnp.clip(spectrogram.griffin_lim(mags, self.n_fft, self.hop, iterations=iterations),
                    -1.0, 1.0)

  def __call__(self, feats: jax.Array, *, rng: jax.Array):
    """Features [B, S, bins] -> (recon features, mean, logvar), sampling z ~ q(z | x)."""
    mean, logvar = self.encode(feats)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return self.decode(z), mean, logvar


def pcm_to_float(pcm: jax.Array) -> jax.Array:
  """int16 PCM (how datasets store audio) -> float32 in [-1, 1]."""
  return pcm.astype(jnp.float32) / 32767.0


def audio_vae_loss(model: AudioVAE, batch: dict, rng: jax.Array, kl_weight: float = 1e-6
                   ) -> tuple[jax.Array, dict]:
  """L1 + MSE between input and reconstructed log-magnitude features, plus a weak KL (summed
  over a clip's latents, relative to the error summed over its features, as `vdm.vae.loss`).

  batch: {'audio': int16 [B, N]} (N a multiple of the VAE's samples_per_latent). Metrics:
  'recon_l1', 'recon_mse' (features), 'spectral_db' (mean |dB error| over the bins within 40 dB of
  the clip's loudest), 'kl' (nats per clip), 'latent_std'.
  """
  feats = model.features(pcm_to_float(batch["audio"]))
  recon, mean, logvar = model(feats, rng=rng)
  err = recon - feats
  recon_l1, recon_mse = jnp.mean(jnp.abs(err)), jnp.mean(jnp.square(err))
  kl = jnp.sum(gaussian_kl(mean, logvar), axis=(1, 2)).mean()
  loss = recon_l1 + recon_mse + kl_weight * kl / feats[0].size
  db_per_unit = -spectrogram.FLOOR_DB / 2.0
  audible = feats >= feats.max(axis=(1, 2), keepdims=True) - 40.0 / db_per_unit
  spectral_db = jnp.sum(jnp.abs(err) * audible) / jnp.maximum(audible.sum(), 1) * db_per_unit
  return loss, dict(loss=loss, recon_l1=recon_l1, recon_mse=recon_mse, spectral_db=spectral_db,
                    kl=kl, latent_std=jnp.std(mean))
