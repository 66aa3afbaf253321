"""Sound: the causal STFT and Griffin-Lim (`spectrogram`), the audio VAE the joint model's audio
stream works in (`vae`), and its training loss."""
