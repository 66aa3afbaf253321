"""Prompt-switch training (control.prompt_switch_prob): colour switches drawn into the spine's
clips, and a prompt per latent frame in the denoiser loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import ConfigError, load_config
from vdm.data import simple
from vdm.models import build_denoiser
from vdm.train.batches import denoiser_batch_fn, prompt_switches
from vdm.train.objectives import denoiser_loss, switched_text


def _examples(num, size=16, frames=5):
  return [e for _, e in simple.generate_examples(0, "train", num, size, size, frames)]


def _batch(examples):
  batch = {k: np.stack([e[k] for e in examples])
           for k in ("video", "center", "color", "background")}
  batch["caption"] = np.array([e["caption"] for e in examples])
  return batch


def test_switch_color_recolours_the_object_from_the_switch_frame_on_only():
  example = _examples(1)[0]
  video, old = example["video"], int(example["color"])
  new = next(c for c in range(len(simple.COLORS)) if c not in (old, int(example["background"])))
  before = video.copy()
  out = simple.switch_color(video, old, new, 3)
  np.testing.assert_array_equal(video, before)  # the input is not modified
  np.testing.assert_array_equal(out[:3], video[:3])
  was_object = np.all(video[3:] == simple.PALETTE[old], axis=-1)
  assert was_object.sum() > 0
  assert np.all(out[3:][was_object] == simple.PALETTE[new])
  np.testing.assert_array_equal(out[3:][~was_object], video[3:][~was_object])
  assert not np.any(np.all(out[3:] == simple.PALETTE[old], axis=-1))


def test_switched_caption_changes_the_object_colour_word_not_the_background():
  text = "a red circle moving right on a green background"
  red, green = simple.COLOR_NAMES.index("red"), simple.COLOR_NAMES.index("green")
  assert simple.switched_caption(text, red, green) == \
      "a green circle moving right on a green background"
  with pytest.raises(ValueError, match="does not start with 'a green '"):
    simple.switched_caption(text, green, red)


def test_prompt_switches_recolour_clip_and_caption_from_a_latent_frame_reproducibly():
  examples = _examples(64)
  batch = _batch(examples)
  video, after, k = prompt_switches(batch, 1.0, 2, seed=0)
  assert np.all((k >= 1) & (k < 3))  # 5 frames, stride 2: latent frames 0, 1, 2
  assert set(k.tolist()) == {1, 2}
  for i, e in enumerate(examples):
    start = (k[i] - 1) * 2 + 1  # the first frame latent k covers
    np.testing.assert_array_equal(video[i, :start], e["video"][:start])
    new = simple.COLOR_NAMES.index(after[i].split()[1])
    assert new not in (int(e["color"]), int(e["background"]))
    assert after[i] == simple.switched_caption(e["caption"], int(e["color"]), new)
    np.testing.assert_array_equal(video[i], simple.switch_color(e["video"], int(e["color"]), new,
                                                                start))
  again = prompt_switches(batch, 1.0, 2, seed=0)
  np.testing.assert_array_equal(again[0], video)
  assert again[1] == after and np.array_equal(again[2], k)
  assert not np.array_equal(prompt_switches(batch, 1.0, 2, seed=1)[2], k)  # the seed draws

  video, after, k = prompt_switches(batch, 0.0, 2, seed=0)
  np.testing.assert_array_equal(video, batch["video"])
  assert after == list(batch["caption"]) and np.all(k == 3)
  _, after, k = prompt_switches(batch, 0.5, 2, seed=0)
  assert 0.3 < np.mean(k < 3) < 0.7
  assert all((a == c) == (j == 3) for a, c, j in zip(after, batch["caption"], k))


def test_switched_text_gives_each_latent_frame_its_prompt():
  def encoder(ids, mask):  # [N, L] -> [N, L, 2]: the ids themselves
    return jnp.stack([ids, mask.astype(ids.dtype)], -1).astype(jnp.float32)

  ids, after_ids = jnp.full((2, 3), 1), jnp.full((2, 3), 2)
  mask, after_mask = jnp.ones((2, 3), bool), jnp.zeros((2, 3), bool).at[:, 0].set(True)
  text, frame_mask = switched_text(encoder, ids, mask, after_ids, after_mask,
                                   jnp.array([1, 4]), 4)
  assert text.shape == (2, 4, 3, 2) and frame_mask.shape == (2, 4, 3)
  np.testing.assert_array_equal(text[..., 0].max(-1), [[1, 2, 2, 2], [1, 1, 1, 1]])
  np.testing.assert_array_equal(frame_mask.sum(-1), [[3, 1, 1, 1], [3, 3, 3, 3]])


def test_a_switch_to_the_same_prompt_is_the_plain_loss_and_another_prompt_is_not():
  config = load_config("configs/control.py:timelines,tiny", ["dit.matmul_dtype='float32'"])
  model = build_denoiser(config, 64, 0)
  # Random weights in place of the zero-initialised (adaLN-zero) ones, so the text matters.
  graphdef, params = nnx.split(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  model = nnx.merge(graphdef, jax.tree.unflatten(
      treedef, [0.2 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
  latent = 1 + (config.data.frames - 1) // config.vae.temporal_downsample
  side = config.data.height // 4
  ids = jax.random.randint(jax.random.key(0), (2, 6), 1, 64)
  batch = dict(latents=jax.random.normal(jax.random.key(1),
                                         (2, latent, side, side, config.vae.latent_channels)),
               ids=ids, mask=jnp.ones((2, 6), bool), empty_ids=jnp.zeros((2, 6), jnp.int32),
               empty_mask=jnp.zeros((2, 6), bool).at[:, 0].set(True))
  plain, _ = denoiser_loss(model, batch, jax.random.key(2), config.diffusion)
  same = dict(batch, switch_ids=ids, switch_mask=batch["mask"], switch_frame=jnp.array([1, 2]))
  np.testing.assert_allclose(denoiser_loss(model, same, jax.random.key(2), config.diffusion)[0],
                             plain, rtol=1e-5)
  other = dict(same, switch_ids=(ids + 7) % 64)
  assert abs(float(denoiser_loss(model, other, jax.random.key(2), config.diffusion)[0])
             - float(plain)) > 1e-4


def test_the_batch_carries_the_prompt_after_the_switch_and_encodes_the_switched_clip():
  class Words:  # one id per word: its colour index + 1, else 0
    def encode(self, texts, max_length):
      ids = np.zeros((len(texts), max_length), np.int32)
      for i, t in enumerate(texts):
        for j, w in enumerate(t.split()[:max_length]):
          ids[i, j] = simple.COLOR_NAMES.index(w) + 1 if w in simple.COLOR_NAMES else 100
      return ids, ids != 0

  examples = _examples(8)
  config = load_config("configs/control.py:timelines,tiny", ["control.prompt_switch_prob=1.0"])
  seen = []
  prepare = denoiser_batch_fn(config, lambda video: seen.append(video) or np.zeros(1), Words(),
                              temporal_stride=2, spatial_stride=4)
  out = prepare(_batch(examples))
  video, after, k = prompt_switches(_batch(examples), 1.0, 2, seed=config.seed)
  np.testing.assert_array_equal(seen[0], video)
  np.testing.assert_array_equal(out["switch_frame"], k)
  np.testing.assert_array_equal(out["switch_ids"][:, 1] - 1,
                                [simple.COLOR_NAMES.index(a.split()[1]) for a in after])
  np.testing.assert_array_equal(out["ids"][:, 1] - 1, [e["color"] for e in examples])


def test_prompt_switches_need_the_spine_clips():
  with pytest.raises(ConfigError, match="control.prompt_switch_prob"):
    load_config("configs/control.py:tiny", ["control.prompt_switch_prob=0.5"])
  with pytest.raises(ConfigError, match="control.prompt_switch_prob=1.5"):
    load_config("configs/control.py:timelines,tiny", ["control.prompt_switch_prob=1.5"])
