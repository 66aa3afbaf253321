"""Fine-tuning Wan-layout weights with vdm's recipes: LoRA, and a tiny Wan model fine-tuned by
`vdm train` (configs/wan.py:tiny-finetune-lora: from the parity fixtures' Wan directory, Diffusion
Forcing with block-causal batches, LoRA) that samples in every mode."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import load_config
from vdm.dit.lora import is_lora
from vdm.models import build_denoiser, without_lora
from vdm.pytree import leaf_names

CONFIG = "configs/wan.py:tiny-finetune-lora"  # LoRA rank 4, alpha 8 on q, kv, out, fc1, fc2
VOCAB = 160


def flat(module: nnx.Module) -> dict:
  params = nnx.state(module, nnx.Param)
  return dict(zip(leaf_names(params), (np.asarray(x) for x in jax.tree.leaves(params))))


def dit_output(denoiser, seed: int = 0):
  """The DiT's velocity on fixed random inputs, jitted (one compile per model structure)."""
  keys = jax.random.split(jax.random.key(seed), 3)
  z = jax.random.normal(keys[0], (1, 3, 4, 4, 4))
  levels = jax.random.uniform(keys[1], (1, 3))
  text = jax.random.normal(keys[2], (1, 5, 24))
  graphdef, state = nnx.split(denoiser.dit)
  run = jax.jit(lambda state: nnx.merge(graphdef, state)(z, levels, text, jnp.ones((1, 5), bool)))
  return np.asarray(run(state))


def test_lora_merge_equals_base_plus_delta():
  """The export folds LoRA into the weights: each target kernel becomes W + (alpha / r) A B,
  everything else is kept, and the plain model computes what the LoRA model did."""
  config = load_config(CONFIG)
  model = nnx.jit(lambda: build_denoiser(config, VOCAB))()  # one program, not one per init op
  # B starts at 0 (the LoRA model is the base model); give it values so there is a delta.
  params = nnx.state(model, nnx.Param)
  names = leaf_names(params)
  keys = iter(jax.random.split(jax.random.key(3), len(names)))
  nnx.update(model, jax.tree.map(
      lambda x, name: 0.1 * jax.random.normal(next(keys), x.shape) if name.endswith(
          "lora_b") else x, params, jax.tree.unflatten(jax.tree.structure(params), names)))
  plain_config, merged = without_lora(config, model, VOCAB)
  assert plain_config.dit.lora_rank == 0 and config.dit.lora_rank == 4
  before, after = flat(model), flat(merged)
  scale = config.dit.lora_alpha / config.dit.lora_rank
  targets = {n[:-len(".lora.lora_a")] for n in before if n.endswith(".lora.lora_a")}
  # Every attention's q, kv, out and the MLP's fc1, fc2 in both blocks.
  assert len(targets) == 2 * (3 * 2 + 2) and set(after) == {n for n in before if not is_lora(n)}
  for name in after:
    layer = name.rsplit(".", 1)[0]
    if name.endswith(".kernel") and layer in targets:
      delta = before[f"{layer}.lora.lora_a"] @ before[f"{layer}.lora.lora_b"]
      np.testing.assert_allclose(after[name], before[name] + scale * delta, atol=1e-6)
      assert np.abs(delta).max() > 1e-3
    else:
      np.testing.assert_array_equal(after[name], before[name], err_msg=name)
  out = dit_output(model)
  np.testing.assert_allclose(dit_output(merged), out, atol=1e-5 * np.abs(out).max())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
  """`vdm train --config configs/wan.py:tiny-finetune-lora`: (config, workdir, model dir)."""
  from vdm.cli import main
  workdir = str(tmp_path_factory.mktemp("wan_finetune"))
  assert main(["train", "--config", CONFIG, "--workdir", workdir]) == 0
  return load_config(CONFIG), workdir, os.path.join(workdir, "model")


def test_finetuning_starts_from_the_wan_weights_and_trains_only_lora(finetuned):
  """The dit stage's last checkpoint: every base parameter is still the Wan directory's, bit for
  bit (DiT and text encoder), and the LoRA matrices moved."""
  import orbax.checkpoint as ocp

  from vdm.train.pretrained import load_pretrained, start_denoiser
  config, workdir, _ = finetuned
  pretrained = load_pretrained(config)
  model = build_denoiser(config, pretrained.tokenizer.vocab_size, config.seed + 1)
  assert all(is_lora(n) for n in start_denoiser(config, model, pretrained))  # all else given
  start = flat(model)
  step = max(int(s) for s in os.listdir(os.path.join(workdir, "dit", "checkpoints")))
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(os.path.join(workdir, "dit", "checkpoints", str(step), "state"))
  trained = dict(zip(leaf_names(state["params"]),
                     (np.asarray(x) for x in jax.tree.leaves(state["params"]))))
  assert trained.keys() == start.keys() and step == config.train.dit.steps
  moved = [n for n in start if not np.array_equal(trained[n], start[n])]
  assert moved and all(is_lora(n) for n in moved), [n for n in moved if not is_lora(n)][:5]
  assert any(n.endswith("lora_b") for n in moved)  # B left 0: the model changed
  # The start is the pretrained model itself: B = 0, the base weights the Wan directory's.
  from vdm.convert.wan import load_wan
  wan = flat(load_wan(config.init_from)[3])
  for name, value in start.items():
    if name.endswith("lora_b"):
      assert not value.any()
    elif not is_lora(name):
      np.testing.assert_array_equal(value, wan[name].astype(value.dtype), err_msg=name)


def test_the_finetuned_model_samples_in_every_mode(finetuned, tmp_path):
  """The exported model (LoRA folded in, init_from cleared: a standalone directory) samples in
  every mode the pipeline offers, the KV-cached autoregressive one included."""
  import mediapy

  from vdm.generate.modes import MODES, pipeline_modes
  from vdm.generate.pipeline import Pipeline
  _, _, model_dir = finetuned
  pipe = Pipeline.load(model_dir)
  assert pipe.config.dit.lora_rank == 0 and pipe.config.init_from == ""
  image = str(tmp_path / "first.png")
  mediapy.write_image(image, np.full((32, 32, 3), 90, np.uint8))
  for mode in pipeline_modes():
    options = dict(image=image) if MODES[mode].needs_image else {}
    frames = pipe("a red fox runs", mode=mode, seed=0, steps=1, **options)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8, mode
    assert frames.std() > 0, mode


def test_keeping_the_vae_needs_a_pretrained_model(tmp_path, capsys):
  """train.vae.steps=0 keeps init_from's VAE; without init_from it is refused before anything
  is written, naming the field (named fine-tune configs leave init_from to --set, so the
  config's own validation allows it)."""
  from vdm.cli import main
  workdir = tmp_path / "run"
  assert main(["train", "--config", "configs/spine.py:tiny", "--set", "train.vae.steps=0",
               "--workdir", str(workdir)]) == 2
  assert "train.vae.steps=0" in capsys.readouterr().err
  assert not workdir.exists() or not any(workdir.iterdir())
