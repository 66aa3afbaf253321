"""The spine: the small text-to-video model the repo ships, trained on this CPU in minutes.

Synthetic clips (a coloured shape moving on a coloured background), 32x32, 9 frames at 8 fps.
The causal VAE compresses 2x in time and 4x in space (9x32x32x3 -> 5x8x8x8); a 4-layer
factorized DiT denoises the latents with flow matching, conditioned on a 2-layer T5-style encoder.

Arguments (`configs/spine.py:ARG`):
  (none)  the shipped model.
  tiny    seconds-long settings for tests and Colab smoke runs.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "spine"
  config.seed = 0

  config.data = ml_collections.ConfigDict(dict(
      height=32, width=32, frames=9, fps=8, num_train=20000, num_test=256, seed=0,
      data_dir="",  # empty: <workdir>/data
  ))
  config.text = ml_collections.ConfigDict(dict(
      vocab_size=256, tokenizer="bpe", max_length=24, width=128, depth=2, heads=4, mlp=256,
      freeze=False,  # True: the denoiser stage leaves the text encoder's weights as they are
      # A pretrained encoder to start from: a directory written by the text stage (`vdm train
      # --until text`: t5.npz + tokenizer.model) or a T5-layout .npz; '' trains from scratch.
      init_from="",
  ))
  # T5 span-corruption pretraining of the text encoder (the `text` stage; off while
  # train.text.steps = 0). T5's defaults: 15 % of the tokens, in spans of 3 on average.
  config.text_pretrain = ml_collections.ConfigDict(dict(
      noise_density=0.15, mean_span_length=3.0,
      # Sentinel ids appended after the tokenizer's pieces (enough for the most spans a
      # text.max_length row can get; validated).
      num_sentinels=16,
      decoder_depth=2,  # layers of the decoder that exists only for pretraining
      tie_head=False,  # True: output head = the token embedding (T5 v1.0); False: own (v1.1)
  ))
  config.vae = ml_collections.ConfigDict(dict(
      base_channels=16, channel_mult=(1, 2, 2), latent_channels=8, temporal_downsample=2,
      num_res_blocks=1, kl_weight=1e-6,
      # group: GroupNorm per frame | rms: per-position RMS norm (Wan's; spatial tiles of a
      # decode then equal the whole decode beyond the convolutions' reach, vdm/vae/tiled.py).
      norm="group",
      # Adversarial loss from a 3D patch discriminator (vdm/vae/discriminator.py), hinge form:
      # weight 0 = off (nothing built); it starts at step disc_start of the VAE stage.
      disc_weight=0.0, disc_start=0, disc_channels=32,
  ))
  config.dit = ml_collections.ConfigDict(dict(
      width=192, depth=4, heads=6, patch=2, mlp_ratio=4.0,
      remat="none",  # none | full | dots: activation checkpointing per block (memory vs speed)
      attention="factorized",  # factorized (spatial, then temporal) | full (one 3D attention)
      temporal_window=0,  # frames each frame attends on either side (0: all; local attention)
      qk_norm=False,  # RMS-normalise queries and keys per head (stabler at scale)
      # sincos: fixed 3D sinusoid added to the tokens | rope3d: rotary (frame, row, col)
      # positions on self-attention queries and keys (relative; needs an even head dim >= 6).
      position="sincos",
      # Run the blocks as jax.lax.scan over stacked weights (params 'blocks.<name>' [depth, ...]):
      # compile time flat in depth; a little slower per step on CPU (README: benchmarks).
      scan_layers=False,
      # Latent frames per token frame: latent frame 0 alone, then groups of temporal_patch
      # (a short last group padded, its padding cropped). Levels are shared within a group; with
      # > 1 only parallel and image_to_video sampling and non-causal training are offered.
      temporal_patch=1,
      # Speed (vdm/dit/fast_ops.py): bf16 matmul inputs with fp32 accumulation and master weights
      # ('bfloat16'), and hand-written LayerNorm/matmul gradients (same values, faster on CPU).
      matmul_dtype="float32", fast_grads=True,
  ))
  config.diffusion = ml_collections.ConfigDict(dict(
      # Uniform, not logit-normal: on these flat-colour clips the trajectory is decided at very high
      # noise, which logit-normal(0, 1) rarely trains on; with it the model learned colour but
      # ignored direction words (direction 15 % at 2,000 steps, identical clips for left/right).
      timestep_sampling="uniform",
      # Probability that a training clip gets an independent level per frame (Diffusion Forcing)
      # instead of one shared level. The spine samples only in parallel mode.
      per_frame_levels_prob=0.0,
      # Teacher forcing (clean earlier chunks, one noisy chunk scored; needs causal_prob = 1).
      teacher_forcing=False,
      # Probability that a batch trains under a block-causal temporal mask (chunk size drawn from
      # causal_chunks, in latent frames), so autoregressive/rolling modes match training.
      causal_prob=0.0, causal_chunks=(1,),
      # Frame positions start at a random offset in [0, max_frame_offset] during training, so a
      # long autoregressive clip's later positions are ones the model has seen.
      max_frame_offset=0,
      # Weight of a loss on the predicted clip's frame-to-frame change (0: off; an ablation).
      temporal_consistency_weight=0.0,
      # Weight of the same loss taken along the exact ground-truth flow (motion supervision:
      # errors must travel with the object; 0: off; an ablation).
      motion_supervision_weight=0.0,
      text_dropout=0.1,  # for classifier-free guidance
  ))
  config.sample = ml_collections.ConfigDict(dict(
      steps=25, guidance=4.0, mode="parallel", sampler="euler", chunk=1, context_noise=0.0,
      shift=3.0,  # more of the steps at high noise, where layout and motion are decided
      aspect="1:1", resolution=32,
      seconds=1.0, fps=8,
      max_frames=33,  # the longest clip the sampler accepts (4x the training length, minus 3)
      # Autoregressive mode with the KV cache streams in bounded memory, so it may go longer; each
      # chunk attends `window` earlier latent frames (0: a training clip's latents minus the chunk).
      max_stream_frames=1025, window=0,
  ))

  stage = lambda **kw: ml_collections.ConfigDict(dict(dict(
      steps=1000, batch_size=16, learning_rate=1e-3, warmup_steps=100, weight_decay=0.0,
      grad_clip=1.0, ema_decay=0.999, log_every=50, checkpoint_every=500,
      # A step with NaN/Inf loss or gradients is never applied; 'skip' counts it and goes on
      # (stopping after max_nan_skips of them), 'stop' stops at once with a report.
      nan_policy="skip", max_nan_skips=10), **kw))
  config.train = ml_collections.ConfigDict(dict(
      # steps=0: no text pretraining (configs/text_pretrain.py turns it on).
      text=stage(steps=0, batch_size=64, learning_rate=1e-3, weight_decay=0.01, ema_decay=0.99),
      vae=stage(steps=3000, batch_size=8, learning_rate=2e-3),
      dit=stage(steps=4000, batch_size=32, learning_rate=8e-4, weight_decay=0.01),
  ))

  if arg == "tiny":
    config.data.update(height=16, width=16, frames=5, num_train=32, num_test=8)
    config.text.update(width=32, depth=1, heads=2, mlp=64, max_length=16)
    config.vae.update(base_channels=8, channel_mult=(1, 2))
    config.dit.update(width=32, depth=1, heads=2)
    config.sample.update(steps=4, resolution=16, seconds=5 / 8, max_frames=9)
    for stage_cfg in (config.train.vae, config.train.dit):
      stage_cfg.update(steps=6, batch_size=4, warmup_steps=2, log_every=2, checkpoint_every=3)
    config.text_pretrain.update(decoder_depth=1)
    config.train.text.update(batch_size=16, warmup_steps=2, log_every=2, checkpoint_every=3)
  elif arg:
    raise ValueError(f"configs/spine.py: unknown argument {arg!r}; allowed: '' or 'tiny'")
  return config


def named_size(arg: str | None, sizes: dict, *, source: str,
               prefix: str) -> ml_collections.ConfigDict:
  """The spine config with the named entry of `sizes` (section -> fields to override) applied;
  'tiny' and 'spine' (the default) are the spine's own. Used by configs/model_sizes.py and
  configs/vae_sizes.py."""
  name = arg or "spine"
  if name == "tiny":
    return get_config("tiny")
  config = get_config()
  if name == "spine":
    return config
  if name not in sizes:
    raise ValueError(f"{source}: unknown size {name!r}; allowed {['tiny', 'spine', *sizes]}")
  config.name = f"{prefix}_{name}"
  for section, fields in sizes[name].items():
    config[section].update(fields)
  return config
