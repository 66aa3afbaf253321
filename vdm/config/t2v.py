"""The text-to-video config (`task = 't2v'`): every field once, with its default, its allowed
values and a line of doc, and the rules between fields.

The defaults are the spine (configs/spine.py): 32x32 clips of 9 frames at 8 fps, a 2x-in-time /
4x-in-space causal VAE, a 4-layer factorized DiT and a 2-layer T5-style encoder, flow matching.
`vdm config show --config configs/<name>.py` prints a config field by field with these docs.
"""
from __future__ import annotations

from vdm.config.fields import (BOOL, Check, ConfigError, Field, decreasing_levels, get,
                               int_tuple, integer, integer_or, number, one_of, require, str_tuple,
                               text)
from vdm.control.timeline import SWITCHES
from vdm.data.aspect_ratios import ASPECTS
from vdm.data.kinds import DATA_KINDS
from vdm.diffusion.samplers import SAMPLERS
from vdm.dit.lora import allowed_targets
from vdm.generate.modes import MODES, allowed_chunks, pipeline_modes
from vdm.text.tokenizer import MODEL_TYPES
from vdm.train.faults import NAN_POLICIES
from vdm.parallel.attention import SEQUENCE_ATTENTION
from vdm.train.microbatch import PRECISIONS
from vdm.vae.model import TEMPORAL_DOWNSAMPLES

AUDIO_DOWNSAMPLES = (1, 2, 4, 8)  # vdm.audio.vae.TEMPORAL_DOWNSAMPLES (jax-free here)

TIMESTEP_SAMPLING = ("uniform", "logit_normal")

POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SEED = integer(0, 2**32 - 1, what="grain and numpy take 32-bit seeds")


def stage(*, min_steps: int = 1, off: str = "the stage is off", **defaults) -> dict:
  """The fields of one training stage of the one loop (vdm.train.loop), with its defaults;
  Field values in `defaults` are extra fields of this stage."""
  d = dict(dict(steps=1000, batch_size=16, learning_rate=1e-3, warmup_steps=100,
                weight_decay=0.0, grad_clip=1.0, ema_decay=0.999, log_every=50,
                checkpoint_every=500), **defaults)
  return dict(
      steps=Field(d["steps"], "optimizer steps of this stage" + (
          f" (0: {off})" if min_steps == 0 else ""), integer(min_steps)),
      batch_size=Field(d["batch_size"], "clips (or captions) per optimizer step, over all "
                       "devices", POSITIVE),
      accumulate=Field(1, "micro-batches the batch is split into, run one after another with "
                       "their gradients averaged (activation memory of batch_size / accumulate)",
                       POSITIVE),
      precision=Field("float32", "bfloat16: the forward and backward run with bf16 parameters "
                      "and activations, the optimizer keeps fp32 master weights",
                      one_of(PRECISIONS)),
      learning_rate=Field(d["learning_rate"], "AdamW peak learning rate (linear warm-up, "
                          "cosine decay to a tenth)", number(1e-8, 1.0)),
      warmup_steps=Field(d["warmup_steps"], "steps of linear learning-rate warm-up",
                         NON_NEGATIVE),
      weight_decay=Field(d["weight_decay"], "AdamW decoupled weight decay", number(0.0, 1.0)),
      grad_clip=Field(d["grad_clip"], "global gradient-norm clip", number(1e-6, 1e6)),
      ema_decay=Field(d["ema_decay"], "EMA of the weights (the exported model is the EMA)",
                      number(0.0, 1.0)),
      log_every=Field(d["log_every"], "steps between metric lines (metrics.jsonl, TensorBoard)",
                      POSITIVE),
      checkpoint_every=Field(d["checkpoint_every"], "steps between orbax checkpoints",
                             POSITIVE),
      nan_policy=Field("skip", "a step with non-finite loss or gradients is never applied; "
                       "'skip' counts it and goes on, 'stop' stops with a report",
                       one_of(NAN_POLICIES)),
      max_nan_skips=Field(10, "skipped steps tolerated before the run stops", NON_NEGATIVE),
      **{k: v for k, v in defaults.items() if isinstance(v, Field)})


MESH_SIZE = integer_or(1, -1, "the devices the other axes leave")


def parallel_fields() -> dict:
  """The `parallel` section: the device mesh `vdm train` runs on (vdm/parallel). Sharding
  changes where arrays live, not what is computed, so a workdir may resume on another mesh."""
  return dict(
      data=Field(1, "devices the batch is split over (parameters replicated); -1: all devices "
                 "the other axes leave", MESH_SIZE),
      fsdp=Field(1, "devices the parameters, gradients and optimizer state are split over "
                 "(along the model width) as well as the batch; gathered per layer", MESH_SIZE),
      tensor=Field(1, "devices the attention heads and MLP widths are split over", MESH_SIZE),
      sequence=Field(1, "devices the clip is split over: its frames (dit.attention=factorized) "
                     "or its tokens (full)", MESH_SIZE),
      sequence_attention=Field("gspmd", "full attention over split tokens: gspmd (the compiler "
                               "gathers keys and values) | ulysses (all-to-all to a split of "
                               "the heads; vdm/parallel/attention.py)",
                               one_of(SEQUENCE_ATTENTION)),
  )


def clip_fields(*, frames: int, num_train: int, num_test: int, long_factor: int,
                num_long: int) -> dict:
  """The `data` fields every task's clips have (and the scenes kind's), with its defaults."""
  return dict(
      frames=Field(frames, "frames per training clip", POSITIVE),
      fps=Field(8, "frames per second of the clips", POSITIVE),
      num_train=Field(num_train, "clips in the train split", POSITIVE),
      num_test=Field(num_test, "clips in the test split", POSITIVE),
      seed=Field(0, "seed the clips are generated from", SEED),
      data_dir=Field("", "where the dataset is built ('' for <workdir>/data)",
                     text("a directory path string ('' for <workdir>/data)")),
      long_factor=Field(long_factor, "scenes: the long split's clips are this many times "
                        "longer", POSITIVE),
      max_objects=Field(3, "scenes: at most this many objects per clip", integer(1, 3)),
      num_long=Field(num_long, "scenes: clips in the long split", NON_NEGATIVE),
  )


SCHEMA = dict(
    name=Field("spine", "the run's name (outputs and reports carry it)", text()),
    task=Field("t2v", "what `vdm train` trains: 't2v' text to video, 'sr' the learned upscaler, "
               "'distill' a few-step student of a t2v model", one_of(("t2v", "sr", "distill"))),
    seed=Field(0, "seed of model init and training randomness", SEED),
    init_from=Field("", "fine-tuning: a model to start from, a vdm model directory (`vdm "
                    "train`'s export) or a downloaded Wan2.1 directory of either layout "
                    "(docs/wan.md): its tokenizer, text encoder, VAE, latent statistics and "
                    "denoiser weights start this run (parameters it lacks, e.g. new control "
                    "inputs or LoRA matrices, keep their fresh init); '' trains from scratch",
                    text("a model directory path string ('' for none)")),
    data=dict(
        kind=Field("simple", "the dataset (vdm.data.kinds)", one_of(lambda: tuple(DATA_KINDS))),
        height=Field(32, "frame height in pixels", POSITIVE),
        width=Field(32, "frame width in pixels", POSITIVE),
        **clip_fields(frames=9, num_train=20000, num_test=256, long_factor=4, num_long=32),
        num_digits=Field(2, "moving_mnist: digits per clip", POSITIVE),
        wrap=Field(False, "simple: objects move on a torus (leave one edge, re-enter at the "
                   "opposite one), so a clip of any length keeps its caption's motion", BOOL),
        name=Field("", "folder: the dataset name given to `vdm data import --out`", text()),
        sample_rate=Field(0, "scenes, sound_scenes: audio samples per second of the soundtrack "
                          "stored beside the frames (0: none; a multiple of data.fps)",
                          NON_NEGATIVE),
    ),
    text=dict(
        vocab_size=Field(256, "sentencepiece vocabulary size", POSITIVE),
        tokenizer=Field("bpe", "sentencepiece model type", one_of(MODEL_TYPES)),
        max_length=Field(24, "token ids per caption, end-of-sequence included",
                         integer(2, what="one piece of text plus the end-of-sequence token")),
        width=Field(128, "T5 encoder width", POSITIVE),
        depth=Field(2, "T5 encoder layers", POSITIVE),
        heads=Field(4, "T5 encoder attention heads", POSITIVE),
        mlp=Field(256, "T5 encoder MLP width", POSITIVE),
        position_bias=Field("shared", "relative-position bias: shared by all layers (T5) | "
                            "per_layer (UMT5, Wan's text encoder)",
                            one_of(("shared", "per_layer"))),
        vocab_rows=Field(0, "rows of the token embedding (0: the tokenizer's vocabulary; UMT5 "
                         "pads its 256,300 pieces to 256,384)", NON_NEGATIVE),
        freeze=Field(False, "True: the denoiser stage leaves the text encoder's weights as they "
                     "are", BOOL),
        init_from=Field("", "a pretrained encoder to start from: a directory of `vdm train "
                        "--until text` (t5.npz + tokenizer.model) or a T5-layout .npz; '' "
                        "trains from scratch",
                        text("a path string ('' for a randomly initialised encoder)")),
    ),
    # T5 span-corruption pretraining of the text encoder (the `text` stage; off while
    # train.text.steps = 0). T5's defaults: 15 % of the tokens, in spans of 3 on average.
    text_pretrain=dict(
        noise_density=Field(0.15, "fraction of tokens masked", number(0.01, 0.99)),
        mean_span_length=Field(3.0, "mean length of a masked span", number(1.0, 64.0)),
        num_sentinels=Field(16, "sentinel ids appended after the tokenizer's pieces (enough for "
                            "the most spans a text.max_length row can get)", POSITIVE),
        decoder_depth=Field(2, "layers of the decoder that exists only for pretraining",
                            POSITIVE),
        tie_head=Field(False, "True: output head = the token embedding (T5 v1.0); False: its "
                       "own (v1.1)", BOOL),
    ),
    vae=dict(
        base_channels=Field(16, "channels of the first level", POSITIVE),
        channel_mult=Field((1, 2, 2), "channel multiplier per level; each level after the first "
                           "halves height and width", int_tuple(1)),
        latent_channels=Field(8, "channels of a latent", POSITIVE),
        # Allowed values depend on channel_mult: checked in `_check_model`.
        temporal_downsample=Field(2, "frames per latent frame (after the first, encoded "
                                  "alone)"),
        num_res_blocks=Field(1, "residual blocks per level", POSITIVE),
        kl_weight=Field(1e-6, "weight of the KL term", number(0.0, 1e6)),
        norm=Field("group", "group: GroupNorm per frame | rms: per-position RMS norm (Wan's; "
                   "spatial tiles of a decode then equal the whole decode beyond the "
                   "convolutions' reach, vdm/vae/tiled.py)", one_of(("group", "rms"))),
        layout=Field("vdm", "vdm: this project's causal VAE | wan: Wan2.1's (zero causal "
                     "padding, per-frame resampling plus temporal convs, middle attention, "
                     "quant convs; docs/wan.md)", one_of(("vdm", "wan"))),
        disc_weight=Field(0.0, "weight of the hinge loss of a 3D patch discriminator "
                          "(vdm/vae/discriminator.py); 0: off, nothing built",
                          number(0.0, 100.0)),
        disc_start=Field(0, "VAE step at which the discriminator starts",
                         integer(0, what="a step")),
        disc_channels=Field(32, "discriminator width", POSITIVE),
        init_from=Field("", "a model directory whose VAE (same vae fields) is used as is: the "
                        "vae stage trains nothing; '' trains one",
                        text("a path string ('' trains the VAE)")),
    ),
    dit=dict(
        width=Field(192, "token width", POSITIVE),
        depth=Field(4, "blocks", POSITIVE),
        heads=Field(6, "attention heads (a divisor of width)", POSITIVE),
        patch=Field(2, "latent pixels per token side", POSITIVE),
        mlp_ratio=Field(4.0, "MLP width / token width", number(0.01, 64.0)),
        remat=Field("none", "activation checkpointing per block: none | full | dots (keeps the "
                    "matmul outputs)", one_of(("none", "full", "dots"))),
        attention=Field("factorized", "factorized (spatial, then temporal) | full (one 3D "
                        "attention)", one_of(("factorized", "full"))),
        temporal_window=Field(0, "frames each frame attends on either side (0: all; local "
                              "attention)", integer(0, what="0: attend all frames")),
        qk_norm=Field(False, "RMS-normalise queries and keys per head (stabler at scale)", BOOL),
        position=Field("sincos", "sincos: a fixed 3D sinusoid added to the tokens | rope3d: "
                       "rotary (frame, row, col) positions on self-attention queries and keys",
                       one_of(("sincos", "rope3d"))),
        scan_layers=Field(False, "run the blocks as jax.lax.scan over stacked weights (compile "
                          "time flat in depth)", BOOL),
        temporal_patch=Field(1, "latent frames per token frame: frame 0 alone, then groups of "
                             "this many; levels are shared within a group",
                             integer(1, 16)),
        # bf16 by default: the train step measured 1.2-1.3x faster on the CPUs this runs on
        # (benchmarks/README.md); models written before this field were trained in fp32.
        matmul_dtype=Field("bfloat16", "bfloat16: bf16 matmul inputs with fp32 accumulation and "
                           "master weights; float32: fp32 throughout",
                           one_of(("float32", "bfloat16")), legacy="float32"),
        fast_grads=Field(True, "hand-written LayerNorm/matmul gradients (same values, faster "
                         "on CPU; vdm/dit/fast_ops.py)", BOOL),
        guidance_input=Field(False, "the guidance scale is an input (a guidance-distilled "
                             "student: one forward per step instead of two)", BOOL),
        step_input=Field(False, "the step size is an input (a shortcut student: few-step "
                         "sampling with the 'shortcut' sampler)", BOOL),
        attention_kernel=Field("xla", "xla: attention on any backend (holds the full score "
                               "matrices) | cudnn: cuDNN flash attention on a GPU for unmasked "
                               "attention, q, k, v in bf16 (Wan's 32,760-token clips)",
                               one_of(("xla", "cudnn"))),
        # Options Wan2.1's layout needs (configs/wan.py sets them; docs/wan.md).
        mlp_width=Field(0, "MLP hidden width (0: width x mlp_ratio)", NON_NEGATIVE),
        qk_norm_over=Field("head", "qk_norm per head | over the whole width before the head "
                           "split (Wan)", one_of(("head", "width"))),
        cross_norm=Field(False, "a LayerNorm with scale and bias before cross-attention (Wan)",
                         BOOL),
        modulation=Field("per_block", "per_block: each block maps the conditioning to its "
                         "(shift, scale, gate) | table: one shared projection plus a learned "
                         "table per block (Wan)", one_of(("per_block", "table"))),
        time_freq_dim=Field(0, "width of the level's sinusoid (0: dit.width; Wan: 256)",
                            integer(0, what="an even width, 0 for dit.width")),
        text_embed=Field("linear", "linear: a projection whose token mean joins the level's "
                         "embedding | mlp: Linear-GELU-Linear, no pooled text (Wan)",
                         one_of(("linear", "mlp"))),
        cross_mask=Field(True, "cross-attention masks padded text; False: padded positions are "
                         "zeroed and attended (Wan)", BOOL),
        # LoRA (vdm/dit/lora.py): fine-tuning trains only the low-rank matrices; the export
        # folds them into the weights.
        lora_rank=Field(0, "rank of LoRA on the blocks' target layers (0: no LoRA; > 0: only "
                        "the LoRA matrices train)", NON_NEGATIVE),
        lora_alpha=Field(16.0, "LoRA scale numerator: the low-rank update is scaled by "
                         "lora_alpha / lora_rank", number(1e-6, 1e6)),
        lora_targets=Field(("q", "kv", "out"), "the layers that get LoRA: q | kv | out | fc1 | "
                           "fc2 in every module, or module.layer (joint, spatial, temporal, "
                           "cross, mlp), e.g. joint.q", str_tuple("a tuple of layer names")),
    ),
    # Conditioning beyond the text (vdm/control, docs/control.md): the DiT's control inputs,
    # trained on the data's recorded object paths and camera path.
    control=dict(
        trajectory=Field(False, "condition the DiT on object paths: a blob per object at its "
                         "centre, per token (vdm/control/features.py)", BOOL),
        camera=Field(False, "condition the DiT on the camera path: scale and offset per frame",
                     BOOL),
        camera_input=Field("frames", "how the DiT reads the camera path: 'frames' (scale and "
                           "offset per frame, into the adaLN condition) or 'tokens' (per token, "
                           "where its content was in frame 0 and the frame before, added to "
                           "the patch embedding; vdm/control/features.py)",
                           one_of(("frames", "tokens"))),
        objects=Field(3, "object slots of a trajectory (slot k: the k-th object the prompt "
                      "names)", integer(1, 3)),
        sigma=Field(1.5, "std in pixels of an object's blob in the trajectory maps",
                    number(0.25, 64.0)),
        dropout=Field(0.3, "training: probability that each object's path, and the camera path, "
                      "of a clip is dropped (so the model also runs without them)",
                      number(0.0, 1.0)),
        # Every scenes caption names its camera move (or, by saying nothing, a still camera), so
        # a model trained on whole captions reads the move from the words and ignores the path.
        camera_caption_dropout=Field(
            0.0, "training: probability that a clip whose camera path is given sees its "
            "caption without the camera clause (vdm.data.captions.without_camera), so the move "
            "must come from the path (needs control.camera)", number(0.0, 1.0)),
        # Prompt timelines ask the model to change a clip mid-way; clips that never change
        # teach it to hold on to what its context shows (vdm/train/batches.py draws them).
        prompt_switch_prob=Field(
            0.0, "training: probability that a clip's object changes colour at a random latent "
            "frame and its caption with it (a prompt per frame), so generation follows prompt "
            "timelines (--prompts); needs data.kind 'simple'", number(0.0, 1.0)),
    ),
    # Sound with the picture (docs/audio.md): an audio VAE over log-magnitude spectrograms,
    # trained in its own stage, and an audio token stream in the DiT.
    audio=dict(
        enabled=Field(False, "generate sound with the picture: an audio VAE stage and the DiT's "
                      "audio token stream (needs data.sample_rate > 0)", BOOL),
        n_fft=Field(1000, "STFT window in samples (2 or 4 x audio.hop; 1000 at 16 kHz: 16 Hz "
                    "bins, so neighbouring colour pitches are >= 2.6 bins apart)", POSITIVE),
        hop=Field(250, "STFT hop in samples", POSITIVE),
        channels=Field(128, "audio VAE width", POSITIVE),
        latent_channels=Field(16, "channels of an audio latent frame", POSITIVE),
        temporal_downsample=Field(4, "STFT frames per audio latent frame (1, 2, 4 or 8)",
                                  Check(lambda v: type(v) is int and v in AUDIO_DOWNSAMPLES,
                                        f"one of {AUDIO_DOWNSAMPLES}")),
        num_res_blocks=Field(1, "audio VAE residual blocks per time resolution", POSITIVE),
        kl_weight=Field(1e-6, "weight of the audio VAE's KL term", number(0.0, 1e6)),
        griffin_lim_iters=Field(64, "Griffin-Lim iterations from decoded magnitudes to a "
                                "waveform", integer(1, 10_000)),
        video_attention=Field(True, "audio and video tokens attend each other in every DiT "
                              "block (False: the ablation 'audio without video attention')",
                              BOOL),
        loss_weight=Field(1.0, "weight of the audio stream's flow-matching loss beside the "
                          "video's", number(0.0, 100.0)),
        given_video_prob=Field(0.1, "probability that a training clip's video is given (level "
                               "0, unscored): audio for a given video", number(0.0, 1.0)),
        given_audio_prob=Field(0.1, "probability that a training clip's audio is given: video "
                               "for a given audio", number(0.0, 1.0)),
    ),
    diffusion=dict(
        # Uniform, not logit-normal: on the spine's flat-colour clips the trajectory is decided at
        # very high noise, which logit-normal(0, 1) rarely trains on; with it the model learned
        # colour but ignored direction words (direction 15 % at 2,000 steps).
        timestep_sampling=Field("uniform", "how training draws levels: uniform | logit_normal",
                                one_of(TIMESTEP_SAMPLING)),
        # Training's counterpart of sample.shift (SD3 / Wan): levels drawn as above, then moved
        # toward noise, t' = shift t / (1 + (shift - 1) t), where direction is decided.
        train_shift=Field(1.0, "shift of the training levels toward noise (1: none; the same "
                          "map as sample.shift)", number(0.01, 100.0)),
        per_frame_levels_prob=Field(0.0, "probability that a clip gets an independent level per "
                                    "frame (Diffusion Forcing) instead of one shared level",
                                    number(0.0, 1.0)),
        teacher_forcing=Field(False, "clean earlier chunks, one noisy chunk scored (needs "
                              "causal_prob = 1)", BOOL),
        causal_prob=Field(0.0, "probability that a batch trains under a block-causal temporal "
                          "mask, so autoregressive and rolling modes match training",
                          number(0.0, 1.0)),
        causal_chunks=Field((1,), "chunk sizes (latent frames) the block-causal masks draw from",
                            int_tuple(1)),
        max_frame_offset=Field(0, "frame positions start at a random offset in [0, this], so a "
                               "long autoregressive clip's later positions are ones the model "
                               "has seen", integer(0, 10_000)),
        temporal_consistency_weight=Field(0.0, "weight of a loss on the predicted clip's frame-to-"
                                          "frame change (an ablation)", number(0.0, 100.0)),
        motion_supervision_weight=Field(0.0, "weight of the same loss along the exact ground-"
                                        "truth flow (motion supervision, an ablation)",
                                        number(0.0, 100.0)),
        text_dropout=Field(0.1, "probability that a caption is replaced by the empty prompt "
                           "(classifier-free guidance)", number(0.0, 0.99)),
        given_frames=Field(0, "extension training: latent frames pinned clean (level 0) and "
                           "unscored", NON_NEGATIVE),
        given_prob=Field(0.0, "extension training: probability that a clip's first given_frames "
                         "are pinned", number(0.0, 1.0)),
    ),
    sample=dict(
        steps=Field(25, "sampler steps", POSITIVE),
        guidance=Field(4.0, "classifier-free guidance scale (1: none)", number(0.0, 100.0)),
        negative_prompt=Field("", "the prompt guidance steers away from when a request gives "
                              "none ('' : unconditional)", text()),
        audio_guidance=Field(4.0, "classifier-free guidance scale of the audio stream "
                             "(sample.guidance is the video's)", number(0.0, 100.0)),
        mode=Field("parallel", "generation mode (vdm.generate.modes)",
                   one_of(pipeline_modes)),
        sampler=Field("euler", "sampler (vdm.diffusion.samplers)", one_of(lambda: SAMPLERS)),
        chunk=Field(1, "latent frames per chunk (chunked modes)", POSITIVE),
        context_noise=Field(0.0, "noise level of finished chunks seen as context (Diffusion "
                            "Forcing)", number(0.0, 1.0, open_high=True)),
        shift=Field(3.0, "time-grid shift: more of the steps at high noise, where layout and "
                    "motion are decided", number(0.01, 100.0)),
        timesteps=Field((), "the steps' levels given outright, before the shift (a few-step "
                        "generator's list / 1000, e.g. CausVid's (1, 0.757, 0.522), or a "
                        "distilled student's); sample.steps is at most their number (fewer "
                        "take evenly spaced ones, vdm.generate.modes.explicit_levels). (): the "
                        "even grid of sample.steps", decreasing_levels()),
        aspect=Field("1:1", "aspect ratio", one_of(tuple(ASPECTS))),
        resolution=Field(32, "short side in pixels", POSITIVE),
        seconds=Field(1.0, "clip duration", number(1e-6, 1e6)),
        fps=Field(8, "frames per second", POSITIVE),
        max_frames=Field(33, "the longest clip the sampler accepts (4x the training length, "
                         "minus 3)", POSITIVE),
        max_stream_frames=Field(1025, "the longest clip of a streaming mode with the KV cache "
                                "(bounded memory)", POSITIVE),
        switch=Field("keep", "prompt timelines: what a switch does to the earlier frames: keep "
                     "(as computed under their prompt) | recache (re-encode the KV cache under "
                     "the new prompt) | cut (a new shot that sees nothing before)",
                     one_of(SWITCHES)),
        window=Field(0, "earlier latent frames each autoregressive chunk attends (0: a training "
                     "clip's latents minus the chunk)", integer(0, what="0: a training clip's "
                                                            "latent frames minus the chunk")),
        distilled_guidance=Field(0.0, "the guidance scale distilled into the weights (0: "
                                 "none); at --guidance 1 such a model runs one DiT row per step",
                                 number(0.0, 100.0)),
    ),
    # Video prediction (configs/moving_mnist.py, `vdm eval --suite prediction`).
    prediction=dict(
        given_frames=Field(0, "pixel frames given, the rest predicted (0: not a prediction "
                           "model)", NON_NEGATIVE),
    ),
    parallel=parallel_fields(),
    train=dict(
        # steps=0: no text pretraining (configs/text_pretrain.py turns it on).
        text=stage(min_steps=0, steps=0, batch_size=64, learning_rate=1e-3, weight_decay=0.01,
                   ema_decay=0.99),
        vae=stage(min_steps=0, off="with init_from, the pretrained VAE as it is", steps=3000,
                  batch_size=8, learning_rate=2e-3,
                  crop_frames=Field(0, "frames of each clip the VAE trains on (0: all)",
                                    NON_NEGATIVE)),
        # The audio VAE (audio.enabled only).
        audio=stage(steps=2000, batch_size=16, learning_rate=2e-3),
        dit=stage(steps=4000, batch_size=32, learning_rate=8e-4, weight_decay=0.01,
                  cache=Field(True, "encode each training clip once with the VAE (and, with "
                              "text.freeze, each caption once with the text encoder) and train "
                              "from that cache beside the dataset (vdm/train/latent_cache.py)",
                              BOOL, legacy=False),
                  eval_every=Field(0, "steps between held-out prompt-adherence scores of the "
                                   "EMA weights during training (eval.jsonl; 0: none)",
                                   NON_NEGATIVE),
                  eval_num=Field(32, "held-out prompts each of those scores samples",
                                 POSITIVE)),
    ),
)


def spatial_stride(config) -> int:
  """Pixels per latent-token side: the VAE's spatial downsampling times the DiT patch."""
  return 2 ** (len(config.vae.channel_mult) - 1) * config.dit.patch


def audio_latents_per_frame(config) -> int:
  """Audio latent frames per video frame of an audio.enabled config (validation makes it whole):
  data.sample_rate / data.fps samples per frame over audio.hop x audio.temporal_downsample."""
  a = config.audio
  return (config.data.sample_rate // config.data.fps) // (a.hop * a.temporal_downsample)


def latent_frames_of(config, frames: int) -> int:
  return 1 + (frames - 1) // config.vae.temporal_downsample


def check_parallel(config) -> None:
  """At most one mesh axis takes the remaining devices (the device count is checked when the
  mesh is built, vdm.parallel.make_mesh)."""
  rest = [k for k, v in config.parallel.items() if v == -1 and k != "sequence_attention"]
  require(len(rest) <= 1, f"parallel.{rest[-1] if rest else ''}", -1,
          f"a size >= 1: parallel.{rest[0] if rest else ''} already takes the remaining devices "
          "(at most one field may be -1)")


def check_accumulate(stage_cfg, name: str) -> None:
  """A stage's batch splits into whole micro-batches."""
  require(stage_cfg.batch_size % stage_cfg.accumulate == 0, f"{name}.accumulate",
          stage_cfg.accumulate, f"a divisor of {name}.batch_size={stage_cfg.batch_size}")


def validate(config) -> None:
  """The rules between fields of a t2v config (each field's own check has run)."""
  check_parallel(config)
  for name in ("text", "vae", "dit"):
    check_accumulate(config.train[name], f"train.{name}")
  require(config.train.vae.precision == "float32", "train.vae.precision",
          config.train.vae.precision, "'float32' (mixed precision is for the text encoder and "
          "the denoiser, which compute in their parameters' dtype)")
  _check_data(config)
  _check_audio(config)
  _check_model(config)
  _check_level_schemes(config)
  _check_prediction(config)
  _check_text_pretrain(config)
  _check_sampling_defaults(config)
  _check_control(config)


def _check_control(config) -> None:
  """Control inputs are trained on a data kind that records paths, one frame per token frame."""
  c = config.control
  require(c.camera or not c.camera_caption_dropout, "control.camera_caption_dropout",
          c.camera_caption_dropout, "0 with control.camera=False (there is no path to read)")
  if c.prompt_switch_prob:
    field, value = "control.prompt_switch_prob", c.prompt_switch_prob
    require(config.data.kind == "simple", field, value,
            f"0 with data.kind={config.data.kind!r} (colour switches are drawn on 'simple' clips)")
    require(config.data.frames > config.vae.temporal_downsample, field, value,
            f"0 with data.frames={config.data.frames} (a switch needs two latent frames)")
    require(config.dit.temporal_patch == 1 and not config.audio.enabled, field, value,
            "0 with dit.temporal_patch > 1 or audio.enabled (a prompt per latent frame)")
  if not (c.trajectory or c.camera):
    return
  kind = config.data.kind
  field = "control.trajectory" if c.trajectory else "control.camera"
  with_paths = tuple(k for k, v in DATA_KINDS.items() if v.paths)
  require(DATA_KINDS[kind].paths, field, True,
          f"False with data.kind={kind!r} (object and camera paths are recorded by "
          f"{with_paths})")
  require(config.dit.temporal_patch == 1, field, True,
          f"False with dit.temporal_patch={config.dit.temporal_patch} (control inputs are per "
          "latent frame)")
  require(not c.trajectory or config.data.max_objects <= c.objects, "control.objects",
          c.objects, f"at least data.max_objects={config.data.max_objects} (a slot per object)")


def _check_data(config) -> None:
  """A soundtrack needs a kind that has one and whole samples per frame."""
  d = config.data
  kind = DATA_KINDS[d.kind]
  require(d.sample_rate == 0 or kind.audio, "data.sample_rate", d.sample_rate,
          f"0 with data.kind={d.kind!r} (soundtracks exist for "
          f"{tuple(k for k, v in DATA_KINDS.items() if v.audio)})")
  require(d.sample_rate > 0 or not kind.audio_required, "data.sample_rate", d.sample_rate,
          f"> 0 with data.kind={d.kind!r} (its clips always have a soundtrack), e.g. 16000")
  require(d.sample_rate % d.fps == 0, "data.sample_rate", d.sample_rate,
          f"a multiple of data.fps={d.fps} (whole audio samples per frame)")


def _check_audio(config) -> None:
  """The joint audio-video model: whole audio latent frames per video frame, and the DiT
  options its audio stream supports."""
  a = config.audio
  if not a.enabled:
    return
  d = config.data
  require(d.sample_rate > 0, "audio.enabled", True,
          f"False unless data.sample_rate > 0 (data.kind={d.kind!r} must store a soundtrack; "
          "e.g. data.kind='sound_scenes', data.sample_rate=16000)")
  require(a.n_fft in (2 * a.hop, 4 * a.hop), "audio.n_fft", a.n_fft,
          f"2 or 4 x audio.hop={a.hop} (an invertible causal STFT)")
  per_latent = a.hop * a.temporal_downsample
  per_frame = d.sample_rate // d.fps
  require(per_frame % per_latent == 0, "audio.hop", a.hop,
          f"a value for which data.sample_rate / data.fps = {per_frame} samples per video frame "
          f"is a multiple of audio.hop x audio.temporal_downsample (now {per_latent})")
  dit = config.dit
  for field, value, ok in (("dit.temporal_patch", dit.temporal_patch, 1),
                           ("dit.scan_layers", dit.scan_layers, False),
                           ("dit.position", dit.position, "sincos"),
                           ("dit.remat", dit.remat, "none")):
    require(value == ok, field, value, f"{ok!r} with audio.enabled=True (the audio stream "
            "supports that setting only)")
  require(not (config.control.trajectory or config.control.camera), "audio.enabled", True,
          "False with control.trajectory or control.camera (the joint audio-video sampler "
          "takes no control inputs)")
  require(config.sample.fps == d.fps, "sample.fps", config.sample.fps,
          f"data.fps={d.fps} with audio.enabled=True (audio latent frames per video frame are "
          "fixed by training)")


def _check_model(config) -> None:
  # Each temporal x2 is folded into one of the len(channel_mult) - 1 spatial steps.
  td = config.vae.temporal_downsample
  max_td = 2 ** (len(config.vae.channel_mult) - 1)
  allowed_td = tuple(t for t in TEMPORAL_DOWNSAMPLES if t <= max_td)
  require(td in allowed_td, "vae.temporal_downsample", td,
          f"one of {allowed_td} (at most 2 ** (len(vae.channel_mult) - 1) = {max_td})")
  stride = spatial_stride(config)
  for field in ("data.height", "data.width", "sample.resolution"):
    value = get(config, field)
    require(value % stride == 0, field, value,
            f"a multiple of {stride} (VAE downsampling x dit.patch)")
  frames = config.data.frames
  require((frames - 1) % td == 0, "data.frames", frames,
          f"1 + a multiple of vae.temporal_downsample={td}")
  require(config.dit.width % config.dit.heads == 0, "dit.heads", config.dit.heads,
          f"a divisor of dit.width={config.dit.width}")
  require(config.text.width % config.text.heads == 0, "text.heads", config.text.heads,
          f"a divisor of text.width={config.text.width}")
  head_dim = config.dit.width // config.dit.heads
  require(config.dit.position != "rope3d" or (head_dim % 2 == 0 and head_dim >= 6),
          "dit.position", config.dit.position,
          f"'sincos' for a head dimension dit.width / dit.heads = {head_dim} (rope3d splits it "
          "into rotation pairs for frame, row and column: it must be even and >= 6)")
  crop = config.train.vae.crop_frames
  require(crop == 0 or (crop <= frames and (crop - 1) % td == 0), "train.vae.crop_frames", crop,
          f"0 (whole clips) or 1 + a multiple of vae.temporal_downsample={td}, at most "
          f"data.frames={frames}")
  if config.dit.lora_rank:
    allowed = allowed_targets(config.dit.attention)
    targets = tuple(config.dit.lora_targets)
    require(targets and all(t in allowed for t in targets), "dit.lora_targets", targets,
            f"a non-empty tuple of names from {allowed} (dit.attention={config.dit.attention!r})")
  temporal_patch = config.dit.temporal_patch
  if temporal_patch > 1:  # grouped frames: no chunked (KV-cached, block-causal) generation
    grouped = tuple(m for m in pipeline_modes() if MODES[m].temporal_patch)
    require(config.sample.mode in grouped, "sample.mode", config.sample.mode,
            f"one of {grouped} with dit.temporal_patch={temporal_patch} (chunked modes need "
            "dit.temporal_patch=1)")
    require(config.diffusion.causal_prob == 0.0, "diffusion.causal_prob",
            config.diffusion.causal_prob, f"0 with dit.temporal_patch={temporal_patch} "
            "(block-causal training needs dit.temporal_patch=1)")


def _check_level_schemes(config) -> None:
  """Teacher forcing, causal training masks, motion supervision and extension training."""
  d = config.diffusion
  latent_frames = latent_frames_of(config, config.data.frames)
  allowed = allowed_chunks(latent_frames)
  require(all(k in allowed for k in d.causal_chunks), "diffusion.causal_chunks",
          d.causal_chunks, f"a non-empty tuple of chunk sizes from {allowed} (the "
          f"{latent_frames} latent frames of a training clip)")
  teacher = d.teacher_forcing
  require(not teacher or d.causal_prob == 1.0, "diffusion.teacher_forcing", teacher,
          "False unless diffusion.causal_prob = 1 (a teacher-forced chunk must not see the "
          "noisy chunks after it)")
  require(not teacher or d.per_frame_levels_prob == 0.0, "diffusion.teacher_forcing", teacher,
          "False unless diffusion.per_frame_levels_prob = 0 (two level schemes at once)")
  kind = config.data.kind
  require(not d.motion_supervision_weight or DATA_KINDS[kind].exact_flow,
          "diffusion.motion_supervision_weight", d.motion_supervision_weight,
          f"0 with data.kind={kind!r} (the exact latent flow is built for "
          f"{tuple(k for k, v in DATA_KINDS.items() if v.exact_flow)})")
  require(d.given_frames < latent_frames, "diffusion.given_frames", d.given_frames,
          f"an integer in [0, {latent_frames - 1}] (latent frames pinned clean in extension "
          f"training; a training clip has {latent_frames})")
  require(d.given_prob == 0 or d.given_frames >= 1, "diffusion.given_prob", d.given_prob,
          "0 unless diffusion.given_frames >= 1 (no frames to give)")
  require(d.given_prob == 0 or not teacher, "diffusion.given_prob", d.given_prob,
          "0 with diffusion.teacher_forcing=True (two level schemes at once)")
  require(not d.motion_supervision_weight or not config.data.wrap,
          "diffusion.motion_supervision_weight", d.motion_supervision_weight,
          "0 with data.wrap=True (the exact latent flow is built for clips that do not wrap)")
  require(not config.data.wrap or kind == "simple", "data.wrap", config.data.wrap,
          f"False with data.kind={kind!r} (only the simple kind wraps)")
  require(d.given_prob == 0 or config.dit.temporal_patch == 1, "diffusion.given_prob",
          d.given_prob, "0 unless dit.temporal_patch=1 (given frames are whole token frames)")


def _check_prediction(config) -> None:
  """The video-prediction task (configs/moving_mnist.py): its given frames must be whole latent
  frames, and extension training must pin exactly those."""
  given, frames = config.prediction.given_frames, config.data.frames
  if given == 0:
    return
  td = config.vae.temporal_downsample
  require(given < frames, "prediction.given_frames", given,
          f"an integer in [1, {frames - 1}] (data.frames={frames}: given + predicted)")
  # With (frames - 1) % td == 0 as well, the predicted frames are then whole latent frames too.
  require((given - 1) % td == 0, "prediction.given_frames", given,
          f"1 + a multiple of vae.temporal_downsample={td}, so that the given frames are "
          "exactly the first latent frames")
  d = config.diffusion
  latents = latent_frames_of(config, given)
  require(d.given_prob == 0 or d.given_frames == latents, "diffusion.given_frames",
          d.given_frames, f"{latents}: the latent frames of prediction.given_frames={given} "
          f"(of {latent_frames_of(config, frames)})")


def _check_text_pretrain(config) -> None:
  """init_from, text.init_from and the text stage."""
  import os
  model_dir = config.init_from
  if model_dir:
    from vdm.convert.layout import detect_layout
    require(os.path.isfile(os.path.join(model_dir, "config.json"))
            or (os.path.isdir(model_dir) and detect_layout(model_dir) is not None), "init_from",
            model_dir, "'' or a model directory written by `vdm train` (with config.json) or a "
            "downloaded Wan2.1 directory (docs/wan.md)")
  require(model_dir == "" or (config.text.init_from == "" and config.train.text.steps == 0),
          "init_from", model_dir, "'' while text.init_from or train.text.steps is set (the "
          "model directory provides the text encoder)")
  init_from = config.text.init_from
  require(init_from == "" or os.path.exists(init_from), "text.init_from", init_from,
          "'' or an existing encoder directory (from `vdm train --until text`) or T5 .npz")
  if config.train.text.steps == 0:
    return
  require(init_from == "", "text.init_from", init_from,
          "'' while train.text.steps > 0 (the text stage provides the initial encoder)")
  p = config.text_pretrain
  from vdm.text.span_corruption import max_noise_spans  # jax: only for text-stage configs
  needed = max_noise_spans(config.text.max_length, p.noise_density, p.mean_span_length)
  require(needed <= p.num_sentinels <= 1000, "text_pretrain.num_sentinels", p.num_sentinels,
          f"an integer in [{needed}, 1000] ({needed}: the most spans a row of "
          f"text.max_length={config.text.max_length} ids gets at this density and span length)")


def check_vae_init(config) -> None:
  """vae.init_from names a model directory with a VAE. Checked when training starts, not on
  every load: an exported model keeps the path it was trained from, which need not exist where
  the model is used."""
  import os
  init_from = config.vae.init_from
  require(init_from == "" or os.path.isdir(os.path.join(init_from, "vae")), "vae.init_from",
          init_from, "'' or a model directory with a vae/ folder (e.g. checkpoints/spine)")


def _check_sampling_defaults(config) -> None:
  """The defaults must make a valid request on their own: `vdm sample` with no options uses
  them."""
  s, td = config.sample, config.vae.temporal_downsample
  require((s.max_frames - 1) % td == 0, "sample.max_frames", s.max_frames,
          f"1 + a multiple of vae.temporal_downsample={td}")
  frames = 1 + td * max(0, round((s.seconds * s.fps - 1) / td))
  require(frames <= s.max_frames, "sample.seconds", s.seconds,
          f"at most {s.max_frames / s.fps:.3g} (sample.max_frames={s.max_frames} at "
          f"sample.fps={s.fps})")
  latent_frames = (frames - 1) // td + 1
  allowed = allowed_chunks(latent_frames)
  require(s.chunk in allowed, "sample.chunk", s.chunk,
          f"a chunk size for the {latent_frames} latent frames of the default clip: {allowed}")
  require(not s.timesteps or s.steps <= len(s.timesteps), "sample.steps", s.steps,
          f"at most {len(s.timesteps)}, the number of sample.timesteps {tuple(s.timesteps)}")


__all__ = ["ASPECTS", "SCHEMA", "ConfigError", "spatial_stride", "validate"]
