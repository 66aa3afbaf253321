"""Bad configs and bad command lines: every case fails before any work with an error that names
the field or option (config errors as ConfigError, CLI errors as exit code 2 on stderr)."""
import os

import numpy as np
import pytest

from vdm import cli
from vdm.config import ConfigError, load_config

TINY = "configs/spine.py:tiny"

# (override, field the error must name)
CONFIG_CASES = [
    ("seed=-1", "seed"),
    ("seed=1.5", "seed"),
    ("data.seed='x'", "data.seed"),
    ("data.height=0", "data.height"),
    ("data.height=18", "data.height"),          # not a multiple of VAE stride x patch
    ("data.width=-16", "data.width"),
    ("data.frames=6", "data.frames"),           # 1 + a multiple of the temporal stride
    ("data.fps=0", "data.fps"),
    ("data.num_train=True", "data.num_train"),  # a bool is not a count
    ("data.data_dir=3", "data.data_dir"),
    ("text.vocab_size=0", "text.vocab_size"),
    ("text.max_length=1", "text.max_length"),
    ("text.heads=3", "text.heads"),             # must divide text.width
    ("vae.temporal_downsample=3", "vae.temporal_downsample"),
    ("vae.channel_mult=()", "vae.channel_mult"),
    ("vae.channel_mult=(1,0)", "vae.channel_mult"),
    ("vae.kl_weight=-1.0", "vae.kl_weight"),
    ("vae.latent_channels=0", "vae.latent_channels"),
    ("dit.patch=3", "data.height"),             # patch vs resolution: names the resolution field
    ("dit.heads=5", "dit.heads"),
    ("dit.mlp_ratio=0.0", "dit.mlp_ratio"),
    ("dit.depth='four'", "dit.depth"),
    ("dit.matmul_dtype='float16'", "dit.matmul_dtype"),
    ("dit.attention='axial'", "dit.attention"),
    ("dit.qk_norm='yes'", "dit.qk_norm"),
    ("dit.position='alibi'", "dit.position"),
    ("dit.scan_layers=1", "dit.scan_layers"),
    ("dit.temporal_patch=0", "dit.temporal_patch"),
    ("dit.temporal_patch=2.0", "dit.temporal_patch"),
    ("text.freeze=1", "text.freeze"),
    ("text.init_from='/no/such/encoder'", "text.init_from"),
    ("train.text.steps=-1", "train.text.steps"),
    ("dit.temporal_window=-1", "dit.temporal_window"),
    ("diffusion.temporal_consistency_weight=-1.0", "diffusion.temporal_consistency_weight"),
    ("diffusion.motion_supervision_weight=-1.0", "diffusion.motion_supervision_weight"),
    ("dit.fast_grads=1", "dit.fast_grads"),
    ("diffusion.timestep_sampling='cosine'", "diffusion.timestep_sampling"),
    ("diffusion.per_frame_levels_prob=1.5", "diffusion.per_frame_levels_prob"),
    ("diffusion.text_dropout=-0.1", "diffusion.text_dropout"),
    ("sample.steps=0", "sample.steps"),
    ("sample.guidance=101.0", "sample.guidance"),
    ("sample.mode='sideways'", "sample.mode"),
    ("sample.sampler='rk45'", "sample.sampler"),
    ("sample.aspect='4:3'", "sample.aspect"),
    ("sample.resolution=18", "sample.resolution"),
    ("sample.context_noise=1.0", "sample.context_noise"),
    ("sample.seconds=10.0", "sample.seconds"),  # beyond sample.max_frames at sample.fps
    ("sample.chunk=4", "sample.chunk"),         # must divide the default clip's latent frames
    ("sample.window=-1", "sample.window"),
    ("diffusion.causal_prob=2.0", "diffusion.causal_prob"),
    ("diffusion.causal_chunks=(5,)", "diffusion.causal_chunks"),  # 3 latent frames: 1, 2, 3
    ("diffusion.causal_chunks=(4,)", "diffusion.causal_chunks"),
    ("diffusion.teacher_forcing=True", "diffusion.teacher_forcing"),  # needs causal_prob = 1
    ("diffusion.max_frame_offset=-2", "diffusion.max_frame_offset"),
    ("sample.max_frames=8", "sample.max_frames"),
    ("train.vae.steps=-1", "train.vae.steps"),
    ("train.dit.batch_size=0", "train.dit.batch_size"),
    ("train.vae.warmup_steps=-1", "train.vae.warmup_steps"),
    ("train.dit.log_every=0", "train.dit.log_every"),
    ("train.vae.checkpoint_every=0", "train.vae.checkpoint_every"),
    ("train.dit.learning_rate=0.0", "train.dit.learning_rate"),
    ("train.vae.ema_decay=1.5", "train.vae.ema_decay"),
    ("train.dit.grad_clip=0.0", "train.dit.grad_clip"),
    ("train.vae.weight_decay=2.0", "train.vae.weight_decay"),
    ("train.vae.nan_policy='ignore'", "train.vae.nan_policy"),
    ("train.dit.max_nan_skips=-1", "train.dit.max_nan_skips"),
    ("dit.depthh=3", "unknown field"),
    ("nope.depth=3", "unknown field"),
    ("dit.depth", "FIELD=VALUE"),
]


@pytest.mark.parametrize("override, field", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_invalid_config_names_the_field(override, field):
  with pytest.raises(ConfigError) as info:
    load_config(TINY, [override])
  assert field in str(info.value)


# Fields valid alone whose combination is not: (overrides, field the error must name).
COMBINATION_CASES = [
    (["dit.position='rope3d'", "dit.heads=8"], "dit.position"),  # head dim 4: too small to split
    # Grouped frames: no autoregressive/rolling sampling, no block-causal training.
    (["dit.temporal_patch=2", "sample.mode='autoregressive'"], "sample.mode"),
    (["dit.temporal_patch=2", "diffusion.causal_prob=0.5"], "diffusion.causal_prob"),
]


@pytest.mark.parametrize("overrides, field", COMBINATION_CASES,
                         ids=[" ".join(c[0]) for c in COMBINATION_CASES])
def test_invalid_combination_names_the_field(overrides, field):
  with pytest.raises(ConfigError) as info:
    load_config(TINY, overrides)
  assert field in str(info.value)


def test_invalid_config_message_format():
  with pytest.raises(ConfigError, match=r"config field train\.vae\.nan_policy='ignore' is "
                                        r"invalid: allowed one of \('skip', 'stop'\)"):
    load_config(TINY, ["train.vae.nan_policy='ignore'"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A zero-weight tiny model directory: enough for every check that runs before sampling.

  Zeros filled into `nnx.eval_shape` skip the random init, which takes ~10 s eagerly on CPU.
  """
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from vdm.data.simple import caption_corpus
  from vdm.models import build_denoiser, build_vae, save_model_dir
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  config = load_config(TINY)
  tokenizer = Tokenizer(train_tokenizer(caption_corpus(0, 2000), vocab_size=config.text.vocab_size))
  directory = str(tmp_path_factory.mktemp("untrained_model"))
  c = config.vae.latent_channels
  def zeros(build):
    graphdef, state = nnx.split(nnx.eval_shape(build))
    return nnx.merge(graphdef, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state))

  save_model_dir(directory, config=config, tokenizer=tokenizer,
                 vae=zeros(lambda: build_vae(config)),
                 denoiser=zeros(lambda: build_denoiser(config, tokenizer.vocab_size)),
                 latent_stats=dict(mean=np.zeros(c), std=np.ones(c)))
  return directory


def _exit_code(argv, capsys):
  """cli.main's exit code (argparse errors exit via SystemExit) and its stderr."""
  try:
    code = cli.main(argv)
  except SystemExit as e:
    code = e.code
  return code, capsys.readouterr().err


TRAIN_CASES = [
    ([], "--config"),
    (["--config", TINY], "--workdir"),
    (["--config", "configs/nope.py", "--workdir", "W"], "--config"),
    (["--config", TINY, "--workdir", "W", "--until", "deploy"], "--until"),
    (["--config", TINY, "--workdir", "W", "--seed", "one"], "--seed"),
    (["--config", TINY, "--workdir", "W", "--set", "train.dit.steps"], "--set"),
    (["--config", TINY, "--workdir", "W", "--set", "dit.nope=1"], "--set dit.nope"),
    (["--config", TINY, "--workdir", "W", "--set", "train.vae.nan_policy=maybe"],
     "train.vae.nan_policy"),
    (["--config", TINY, "--workdir", "W", "--set", "sample.fps=-8"], "sample.fps"),
]


@pytest.mark.parametrize("args, option", TRAIN_CASES, ids=[" ".join(c[0][-2:]) for c in TRAIN_CASES])
def test_invalid_train_command_names_the_option(args, option, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  args = [str(tmp_path / "w") if a == "W" else a for a in args]
  code, err = _exit_code(["train"] + args, capsys)
  assert code == 2 and option in err, err
  assert not os.path.exists(tmp_path / "w")  # nothing was started


SAMPLE_CASES = [
    ([], "--prompt"),
    (["--prompt", ""], "--prompt"),
    (["--prompt", "   "], "--prompt"),
    (["--steps", "many"], "--steps"),
    (["--steps", "0"], "--steps"),
    (["--steps", "5000"], "--steps"),
    (["--seconds", "abc"], "--seconds"),
    (["--seconds", "0"], "--seconds"),
    (["--seconds", "nan"], "--seconds"),
    (["--seconds", "60"], "--seconds"),
    (["--fps", "0"], "--fps"),
    (["--fps", "2.5"], "--fps"),
    (["--aspect", "4:3"], "--aspect"),
    (["--resolution", "18"], "--resolution"),
    (["--resolution", "-16"], "--resolution"),
    (["--guidance", "-1"], "--guidance"),
    (["--guidance", "inf"], "--guidance"),
    (["--mode", "sideways"], "--mode"),
    (["--sampler", "rk45"], "--sampler"),
    (["--mode", "autoregressive", "--chunk", "4"], "--chunk"),
    (["--chunk", "0"], "--chunk"),
    (["--context-noise", "1.0"], "--context-noise"),
    (["--mode", "image_to_video"], "--image"),
    (["--image", "/nonexistent.png"], "--image"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "x"], "--seed"),
    (["--post", "upscale(2"], "upscale(2"),
    (["--checkpoint", "/nonexistent/model"], "--checkpoint"),
    (["--out", "EXISTS"], "--overwrite"),
]


@pytest.mark.parametrize("args, option", SAMPLE_CASES,
                         ids=[" ".join(c[0]) or "no-prompt" for c in SAMPLE_CASES])
def test_invalid_sample_command_names_the_option(args, option, model_dir, tmp_path, capsys):
  existing = tmp_path / "exists.mp4"
  existing.write_bytes(b"keep me")
  argv = ["sample", "--checkpoint", model_dir, "--out", str(tmp_path / "x.mp4")]
  if "--prompt" not in args and option != "--prompt":
    argv += ["--prompt", "a red circle"]
  argv += [str(existing) if a == "EXISTS" else a for a in args]
  code, err = _exit_code(argv, capsys)
  assert code == 2 and option in err, err
  assert not os.path.exists(tmp_path / "x.mp4")
  assert existing.read_bytes() == b"keep me"


def test_eval_suite_is_named(model_dir, capsys):
  code, err = _exit_code(["eval", "fvd", "--checkpoint", model_dir], capsys)
  assert code == 2 and "eval suite" in err


def test_at_least_thirty_cases():
  assert len(CONFIG_CASES) + len(TRAIN_CASES) + len(SAMPLE_CASES) >= 30
