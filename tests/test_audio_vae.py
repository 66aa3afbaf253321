"""The causal STFT, its features and Griffin-Lim (vdm.audio.spectrogram) and the audio VAE
(vdm.audio.vae): round trips, calibration, causality bit for bit, and learning."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from vdm.audio import spectrogram
from vdm.audio.vae import AudioVAE, audio_vae_loss
from vdm.data import scene_examples, soundtrack
from vdm.eval.metrics import audio as audio_metrics

SR = 8000
N_FFT, HOP = 400, 100


def _tone(hz, amplitude=0.3, n=4000):
  return (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


@pytest.mark.parametrize("ratio", [2, 4])
def test_istft_inverts_stft(ratio):
  x = np.random.default_rng(0).normal(size=(2, 3000)).astype(np.float32)
  n_fft = ratio * HOP
  y = np.asarray(spectrogram.istft(spectrogram.stft(x, n_fft, HOP), n_fft, HOP))
  assert y.shape == x.shape
  # Exact but for the last samples, which fewer frames cover (see istft).
  np.testing.assert_allclose(y[:, :-n_fft // 10], x[:, :-n_fft // 10], atol=1e-5)


def test_stft_is_causal():
  x = np.random.default_rng(1).normal(size=(1, 2000)).astype(np.float32)
  later = x.copy()
  later[0, 1234:] += 1.0
  a, b = (np.asarray(spectrogram.stft(v, N_FFT, HOP)) for v in (x, later))
  first_touched = 1234 // HOP  # frame m ends at (m + 1) hop
  np.testing.assert_array_equal(a[:, :first_touched], b[:, :first_touched])
  assert np.abs(a[:, first_touched] - b[:, first_touched]).max() > 1e-3


def test_features_are_calibrated_decibels():
  hz = 1000.0  # on a bin: 1000 / (8000 / 400) = 50
  feats = np.asarray(spectrogram.features(_tone(hz, 0.1), N_FFT, HOP))
  peak = feats[5:, int(hz * N_FFT / SR)].mean()
  assert peak == pytest.approx(1.0 + 20 * np.log10(0.1) / 40.0, abs=1e-3)
  silence = np.asarray(spectrogram.features(np.zeros(800, np.float32), N_FFT, HOP))
  assert (silence == -1.0).all()
  mags = spectrogram.magnitudes_of(jnp.asarray(feats), N_FFT)
  np.testing.assert_allclose(np.asarray(mags), np.abs(np.asarray(
      spectrogram.stft(_tone(hz, 0.1), N_FFT, HOP))), rtol=1e-3, atol=1e-3)


def test_griffin_lim_keeps_pitch_and_clicks():
  example = scene_examples.make_example(3, "train", 2, 32, 32, 17, sample_rate=16_000,
                                        **scene_examples.SOUND_SCENES)
  audio = soundtrack.from_pcm16(example["audio"])
  mags = jnp.abs(spectrogram.stft(audio, 500, 250))
  rebuilt = np.asarray(spectrogram.griffin_lim(mags, 500, 250, iterations=32))
  true_on = audio_metrics.click_onsets(audio, 16_000)
  got_on = audio_metrics.click_onsets(rebuilt, 16_000, threshold=0.1)
  assert len(true_on) >= 2
  for onset in true_on:  # within a window (500 samples) of every true click
    assert np.abs(got_on - onset).min() < 500
  assert (audio_metrics.sounding_colors(rebuilt, 16_000)
          == audio_metrics.sounding_colors(audio, 16_000))


def _vae(td=4, **kw):
  return AudioVAE(n_fft=N_FFT, hop=HOP, channels=16, latent_channels=4, temporal_downsample=td,
                  rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("td", [1, 2, 4])
def test_vae_encoder_is_causal(td):
  model = _vae(td)
  x = np.random.default_rng(2).normal(size=(1, 3200)).astype(np.float32) * 0.3
  spl = HOP * td
  rows = [x[0]] + [np.concatenate([x[0, :k * spl + 7], x[0, k * spl + 7:] + 0.5])
                   for k in range(3)]
  means = np.asarray(jax.jit(lambda a: model.encode_audio(a)[0])(jnp.asarray(np.stack(rows))))
  assert means.shape == (4, 3200 // spl, 4)
  for k in range(3):
    # Samples from k spl + 7 on changed: latent j sees samples < (j + 1) spl only.
    for j in range(means.shape[1]):
      diff = np.abs(means[1 + k, j] - means[0, j]).max()
      assert (diff == 0.0) == (j < k), (td, k, j, diff)


def test_vae_decoder_is_causal():
  model = _vae(4)
  z = jax.random.normal(jax.random.key(0), (1, 5, 4))
  rows = [z[0]] + [z[0].at[j].add(1.0) for j in range(5)]
  out = np.asarray(jax.jit(model.decode)(jnp.stack(rows)))
  assert out.shape == (6, 20, N_FFT // 2 + 1)
  for j in range(5):
    for f in range(20):
      diff = np.abs(out[1 + j, f] - out[0, f]).max()
      assert (diff == 0.0) == (f < 4 * j), (j, f)  # latent j makes frames 4j .. 4j + 3


def test_bad_settings_raise_named_errors():
  with pytest.raises(ValueError, match="audio.n_fft"):
    AudioVAE(n_fft=300, hop=100, channels=8, latent_channels=2, temporal_downsample=2,
             rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="audio.temporal_downsample"):
    _vae(3)
  with pytest.raises(ValueError, match="multiple of 400"):
    _vae(4).latent_frames(1000)


def test_vae_learns_the_soundtracks():
  """Two soundtracks, the lowest and the highest colour's tone: 300 steps take the feature error
  far below predicting silence (where the untrained decoder starts) and the decoded audio of
  each has its own pitch (a decoder that ignored its latents would give both the same)."""
  colors = (0, len(soundtrack.TONE_HZ) - 1)
  t = np.arange(8000) / SR
  pcm = np.stack([soundtrack.to_pcm16(0.15 * np.sin(2 * np.pi * soundtrack.TONE_HZ[c] * t))
                  for c in colors])
  model = AudioVAE(n_fft=N_FFT, hop=HOP, channels=32, latent_channels=4, temporal_downsample=4,
                   rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  loss_fn = functools.partial(audio_vae_loss, kl_weight=1e-6)

  @nnx.jit
  def step(model, optimizer, batch, rng):
    (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, rng)
    optimizer.update(model, grads)
    return metrics

  batch = {"audio": jnp.asarray(pcm)}
  for rng in jax.random.split(jax.random.key(0), 300):
    metrics = step(model, optimizer, batch, rng)
  feats = np.asarray(model.features(soundtrack.from_pcm16(pcm)))
  silence = np.abs(feats + 1.0).mean()
  assert float(metrics["recon_l1"]) < 0.5 * silence, (float(metrics["recon_l1"]), silence)
  z = model.encode_audio(soundtrack.from_pcm16(pcm))[0]
  decoded = np.asarray(model.decode_audio(z, iterations=32))
  for color, audio in zip(colors, decoded):
    assert int(np.argmax(audio_metrics.tone_amplitudes(audio, SR))) == color
