"""Span-corruption pretraining of the text encoder: the decoder's masks, the loss going down
through the one loop, and the pretrained encoder loading into the text-to-video model unchanged."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import ConfigError, load_config
from vdm.models import build_denoiser, count_params, load_model_dir
from vdm.text.decoder import SpanCorruptionModel
from vdm.text.encoder import relative_position_buckets
from vdm.text.pretrain import build_pretrain_model, export_encoder, init_text_encoder
from vdm.text.t5_weights import load_t5_weights
from vdm.train.run import run_training, train_tokenizer_stage

TINY = "configs/text_pretrain.py:tiny"
SHAPE = dict(vocab_size=40, width=32, depth=1, heads=4, mlp=48, decoder_depth=2)


def test_decoder_is_causal_and_ignores_encoder_padding():
  model = SpanCorruptionModel(**SHAPE, tie_head=False, rngs=nnx.Rngs(0))
  ids = jnp.array([[5, 6, 7, 8, 1, 0, 0]])
  mask = ids != 0
  dec = jnp.array([[0, 39, 9, 10, 1, 0]])
  logits = model(ids, mask, dec)
  assert logits.shape == (1, 6, 40)
  later = model(ids, mask, dec.at[0, 3:].set(jnp.array([20, 21, 22])))
  np.testing.assert_allclose(later[:, :3], logits[:, :3], atol=1e-5)  # position t sees <= t
  assert not np.allclose(later[:, 3], logits[:, 3])
  padded = model(ids.at[0, 5:].set(jnp.array([11, 12])), mask, dec)
  np.testing.assert_allclose(padded, logits, atol=1e-5)
  assert not np.allclose(model(ids.at[0, 1].set(13), mask, dec), logits)


def test_tied_head_reuses_the_embedding():
  tied = SpanCorruptionModel(**SHAPE, tie_head=True, rngs=nnx.Rngs(0))
  untied = SpanCorruptionModel(**SHAPE, tie_head=False, rngs=nnx.Rngs(0))
  assert count_params(untied) - count_params(tied) == 32 * 40
  ids = jnp.array([[5, 6, 1]])
  assert tied(ids, ids != 0, jnp.array([[0, 39]])).shape == (1, 2, 40)
  # One [vocab, width] table in the tied model: the decoder's inputs and the head both use the
  # encoder's embedding (T5's `shared`).
  shapes = [x.shape for x in jax.tree.leaves(nnx.state(tied, nnx.Param))]
  assert shapes.count((40, 32)) == 1


def test_causal_buckets_cover_only_the_past():
  rel = jnp.arange(-300, 5)
  buckets = np.asarray(relative_position_buckets(rel, bidirectional=False))
  assert np.all(buckets[rel >= 0] == 0) and buckets.max() == 31
  distance = -np.asarray(rel)[np.asarray(rel) <= 0]
  order = np.argsort(distance)
  assert np.all(np.diff(buckets[np.asarray(rel) <= 0][order]) >= 0)  # farther: same or later
  np.testing.assert_array_equal(buckets[300 - 15:301], np.arange(15, -1, -1))  # exact up to 16


def test_pretrained_encoder_loads_into_the_t2v_model_with_identical_outputs(tmp_path):
  from vdm.data.simple import caption_corpus
  from vdm.text.tokenizer import Tokenizer, train_tokenizer
  config = load_config(TINY)
  tokenizer = Tokenizer(train_tokenizer(caption_corpus(0, 2000), vocab_size=config.text.vocab_size))
  model = build_pretrain_model(config, tokenizer.vocab_size, seed=3)
  assert model.encoder.embed.embedding.shape[0] == tokenizer.vocab_size + 16  # + sentinels
  export_encoder(str(tmp_path), model.encoder, tokenizer, config)
  denoiser = build_denoiser(config, tokenizer.vocab_size, seed=0)
  ids, mask = tokenizer.encode(caption_corpus(1, 6), config.text.max_length)
  assert not np.allclose(denoiser.text(ids, mask), model.encoder(ids, mask))
  init_text_encoder(denoiser.text, str(tmp_path))
  np.testing.assert_array_equal(denoiser.text(ids, mask), model.encoder(ids, mask))
  bare = build_denoiser(config, tokenizer.vocab_size, seed=1)  # the bare .npz loads the same
  init_text_encoder(bare.text, str(tmp_path / "t5.npz"))
  np.testing.assert_array_equal(bare.text(ids, mask), model.encoder(ids, mask))
  # A model of another width is refused, naming the array.
  other = build_denoiser(load_config(TINY, ["text.width=64", "text.mlp=128"]),
                         tokenizer.vocab_size)
  with pytest.raises(ValueError, match=r"shared\.weight"):
    init_text_encoder(other.text, str(tmp_path))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """The tiny pretraining config through every stage, the denoiser's encoder frozen."""
  os.environ["VDM_NO_PROGRESS"] = "1"
  workdir = str(tmp_path_factory.mktemp("text_pretrain"))
  config = load_config(TINY, ["train.text.log_every=1", "text.freeze=True"])
  return workdir, run_training(config, workdir), config


def test_pretraining_lowers_the_span_corruption_loss(pretrained):
  workdir, _, config = pretrained
  lines = [json.loads(l) for l in open(os.path.join(workdir, "text", "metrics.jsonl"))]
  assert [l["step"] for l in lines] == list(range(1, config.train.text.steps + 1))
  first = lines[0]
  last = np.mean([l["loss"] for l in lines[-5:]])
  # Step 1's metrics are the initial model's: ~log(vocab + sentinels).
  assert first["loss"] > 0.8 * np.log(config.text.vocab_size)
  assert last < 0.5 * first["loss"], (first["loss"], last)
  assert np.mean([l["token_accuracy"] for l in lines[-5:]]) > 0.5 > first["token_accuracy"]
  assert os.listdir(os.path.join(workdir, "text", "tensorboard"))
  assert sorted(os.listdir(os.path.join(workdir, "text_encoder"))) == [
      "config.json", "eval.json", "t5.npz", "tokenizer.model"]
  # On held-out compositions too (never trained on), the exported weights beat the initial ones.
  report = json.load(open(os.path.join(workdir, "text_encoder", "eval.json")))
  assert report["num_captions"] == 1024
  assert report["final"]["loss"] < 0.5 * report["initial"]["loss"], report


def test_the_t2v_model_starts_from_the_pretrained_encoder(pretrained):
  """Frozen, the exported model's text encoder is the pretrained one, bit for bit."""
  workdir, model_dir, config = pretrained
  _, tokenizer, _, denoiser, _ = load_model_dir(model_dir)
  reference = build_denoiser(config, tokenizer.vocab_size, seed=7).text
  load_t5_weights(reference, os.path.join(workdir, "text_encoder", "t5.npz"))
  ids, mask = tokenizer.encode(["a red circle moving left on a blue background", ""],
                               config.text.max_length)
  np.testing.assert_array_equal(denoiser.text(ids, mask), reference(ids, mask))


def test_rerun_restores_the_text_stage(pretrained):
  workdir, _, config = pretrained
  path = os.path.join(workdir, "text", "metrics.jsonl")
  before = open(path).read()
  run_training(config, workdir, until="text")
  assert open(path).read() == before


def test_resuming_mid_stage_gives_the_same_log_and_weights(pretrained, tmp_path):
  """Drop the last checkpoint and rerun: the stage continues from the one before (grain
  iterator, spans from the step's key) and reproduces the uninterrupted run bit for bit."""
  workdir, _, config = pretrained
  copy = str(tmp_path / "copy")
  for name in ("text", "tokenizer.model", "config.json"):
    (shutil.copytree if name == "text" else shutil.copy)(os.path.join(workdir, name),
                                                         os.path.join(copy, name))
  steps = sorted(int(d) for d in os.listdir(os.path.join(copy, "text", "checkpoints"))
                 if d.isdigit())
  assert steps == [30, 60]
  shutil.rmtree(os.path.join(copy, "text", "checkpoints", "60"))
  run_training(config, copy, until="text")
  def log(directory):  # wall-clock seconds aside
    return [dict(json.loads(l), seconds=None)
            for l in open(os.path.join(directory, "text", "metrics.jsonl"))]

  assert log(copy) == log(workdir)
  with np.load(os.path.join(copy, "text_encoder", "t5.npz")) as a, \
       np.load(os.path.join(workdir, "text_encoder", "t5.npz")) as b:
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
      np.testing.assert_array_equal(a[name], b[name])


def test_init_from_brings_its_tokenizer_and_refuses_another(pretrained, tmp_path):
  workdir, _, _ = pretrained
  encoder_dir = os.path.join(workdir, "text_encoder")
  config = load_config("configs/spine.py:tiny", [f"text.init_from={encoder_dir!r}"])
  fresh = str(tmp_path / "fresh")
  os.makedirs(fresh)
  tokenizer = train_tokenizer_stage(config, fresh)
  assert tokenizer.model_proto == open(os.path.join(encoder_dir, "tokenizer.model"), "rb").read()
  clash = str(tmp_path / "clash")
  os.makedirs(clash)
  train_tokenizer_stage(load_config("configs/spine.py:tiny", ["text.vocab_size=128"]), clash)
  with pytest.raises(ValueError, match="tokenizer other than the one of text.init_from"):
    train_tokenizer_stage(config, clash)


@pytest.mark.parametrize("override, field", [
    ("text_pretrain.noise_density=1.5", "text_pretrain.noise_density"),
    ("text_pretrain.mean_span_length=0.5", "text_pretrain.mean_span_length"),
    ("text_pretrain.num_sentinels=0", "text_pretrain.num_sentinels"),
    ("text_pretrain.decoder_depth=0", "text_pretrain.decoder_depth"),
    ("text_pretrain.tie_head=1", "text_pretrain.tie_head"),
    ("train.text.learning_rate=0.0", "train.text.learning_rate"),
    ("train.text.batch_size=0", "train.text.batch_size"),
    ("train.text.steps=-1", "train.text.steps"),
    ("text.init_from='configs'", "text.init_from"),  # exists, but the text stage is on
])
def test_invalid_pretraining_values_name_the_field(override, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    load_config(TINY, [override])


def test_too_few_sentinels_for_the_density_are_refused():
  with pytest.raises(ConfigError, match=r"text_pretrain\.num_sentinels=16 .* \[23, 1000\]"):
    load_config(TINY, ["text_pretrain.noise_density=0.5", "text_pretrain.mean_span_length=1.0",
                       "text.max_length=48"])


def test_a_workdir_from_before_init_from_still_resumes(tmp_path):
  """config.json written before text.init_from existed: same run at init_from=''; not another."""
  from vdm.train.run import check_workdir_config
  config = load_config("configs/spine.py:tiny")
  old = json.loads(config.to_json())
  del old["text"]["init_from"], old["text"]["freeze"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  check_workdir_config(config, str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(ValueError, match=r"text\.init_from: None -> 'configs'"):
    check_workdir_config(load_config("configs/spine.py:tiny", ["text.init_from='configs'"]),
                         str(tmp_path))
