"""The DiT's control inputs and per-frame prompts: 'not given' is zeros, a prompt per frame
equals one shared prompt when they agree, block-causality holds, the KV-cached chunks equal the
full forward, parameters match the closed form, and training reaches (and drops) them."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import load_config, section
from vdm.dit.model import Control
from vdm.generate.kv_cache import empty_cache
from vdm.generate.modes import block_causal_mask
from vdm.models import build_denoiser, count_params, denoiser_param_count
from vdm.train.objectives import denoiser_loss, drop_control

F, G, E = 24, 5, 9  # control token, frame and camera-token features


def inputs(frames=4, batch=2):
  r = jax.random.split(jax.random.key(0), 5)
  z = jax.random.normal(r[0], (batch, frames, 4, 4, 4))
  levels = jax.random.uniform(r[1], (batch, frames))
  text = jax.random.normal(r[2], (batch, 5, 16))
  mask = jnp.ones((batch, 5), bool).at[:, 4].set(False)
  control = Control(jax.random.normal(r[3], (batch, frames, 4, F)),
                    jax.random.normal(r[4], (batch, frames, G)))
  return z, levels, text, mask, control


def test_control_not_given_reads_zeros_and_changes_the_output(randomized_dit):
  model = randomized_dit(control_token_features=F, control_frame_features=G)
  z, levels, text, mask, control = inputs()
  zeros = Control(jnp.zeros_like(control.tokens), jnp.zeros_like(control.frames))
  base = model(z, levels, text, mask)
  np.testing.assert_allclose(model(z, levels, text, mask, control=zeros), base, atol=1e-6)
  np.testing.assert_allclose(model(z, levels, text, mask, control=Control(frames=zeros.frames)),
                             base, atol=1e-6)
  for part in (Control(tokens=control.tokens), Control(frames=control.frames)):
    assert np.abs(model(z, levels, text, mask, control=part) - base).max() > 1e-2
  with pytest.raises(ValueError, match="control tokens given to a DiT built without them"):
    randomized_dit()(z, levels, text, mask, control=Control(tokens=control.tokens))


def test_camera_tokens_are_read_per_token_and_not_given_reads_zeros(randomized_dit):
  model = randomized_dit(control_camera_token_features=E)
  z, levels, text, mask, _ = inputs()
  maps = jax.random.normal(jax.random.key(7), z.shape[:2] + (4, E))
  base = model(z, levels, text, mask)
  np.testing.assert_allclose(
      model(z, levels, text, mask, control=Control(camera_tokens=jnp.zeros_like(maps))), base,
      atol=1e-6)
  assert np.abs(model(z, levels, text, mask, control=Control(camera_tokens=maps))
                - base).max() > 1e-2
  with pytest.raises(ValueError, match="control camera_tokens given to a DiT built without"):
    randomized_dit()(z, levels, text, mask, control=Control(camera_tokens=maps))


def test_fresh_control_layers_start_as_no_change():
  """Zero-initialised: a model gains control inputs without changing what it computes."""
  from vdm.dit.model import DiT
  z, levels, text, mask, control = inputs()
  kw = dict(latent_channels=4, text_width=16, width=32, depth=1, heads=4, patch=2)
  plain = DiT(**kw, rngs=nnx.Rngs(0))
  with_control = DiT(**kw, control_token_features=F, control_frame_features=G, rngs=nnx.Rngs(0))
  nnx.update(with_control, nnx.state(plain))
  np.testing.assert_allclose(with_control(z, levels, text, mask, control=control),
                             plain(z, levels, text, mask), atol=1e-6)


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_prompt_per_frame(randomized_dit, attention):
  """Equal per-frame prompts give the shared-prompt output; under a block-causal mask a later
  frame's prompt never reaches an earlier frame, and changing it changes that frame."""
  model = randomized_dit(attention=attention)
  z, levels, text, mask, _ = inputs()
  causal = jnp.asarray(block_causal_mask(4, 2))
  per_frame = jnp.repeat(text[:, None], 4, axis=1)
  per_mask = jnp.repeat(mask[:, None], 4, axis=1)
  base = model(z, levels, text, mask, causal)
  np.testing.assert_allclose(model(z, levels, per_frame, per_mask, causal), base, atol=1e-5)
  other = per_frame.at[:, 2:].set(jax.random.normal(jax.random.key(9), text.shape)[:, None])
  out = model(z, levels, other, per_mask, causal)
  np.testing.assert_allclose(out[:, :2], base[:, :2], atol=1e-5)
  assert np.abs(out[:, 2:] - base[:, 2:]).max() > 1e-2


def test_cached_chunks_with_control_and_own_prompts_equal_the_full_forward(randomized_dit):
  model = randomized_dit(control_token_features=F, control_frame_features=G)
  z, levels, text, mask, control = inputs()
  other = jax.random.normal(jax.random.key(7), text.shape)
  per_frame = jnp.stack([text, text, other, other], axis=1)
  full = model(z, levels, per_frame, jnp.repeat(mask[:, None], 4, 1),
               jnp.asarray(block_causal_mask(4, 2)), control=control)
  cache = empty_cache(depth=2, batch_tokens=2 * 4, slots=4, heads=4, head_dim=8)
  from vdm.generate.kv_cache import write_frames
  outs = []
  for start, prompt in ((0, text), (2, other)):
    part = Control(control.tokens[:, start:start + 2], control.frames[:, start:start + 2])
    v, (k, vv) = model.forward_cached(z[:, start:start + 2], levels[:, start:start + 2], prompt,
                                      mask, cache, start, control=part)
    cache = write_frames(cache, k, vv, start)
    outs.append(v)
  np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=2e-4, rtol=2e-4)


def test_parameter_count_with_control_matches_the_formula():
  config = load_config("configs/control.py")
  vocab = config.text.vocab_size
  count = count_params(nnx.eval_shape(lambda: build_denoiser(config, vocab)))
  assert count == denoiser_param_count(config, vocab)
  per_token = load_config("configs/control.py", ["control.camera_input='tokens'"])
  assert count_params(nnx.eval_shape(lambda: build_denoiser(per_token, vocab))) == \
      denoiser_param_count(per_token, vocab)
  plain = load_config("configs/control.py", ["control.trajectory=False", "control.camera=False",
                                            "control.camera_caption_dropout=0.0"])
  w, f, g = config.dit.width, 8 * 8 * 2 * 1, 6 * 2 + 1  # stride 8, td 2, one object slot
  assert count == denoiser_param_count(plain, vocab) + (f * w + w) + (g * w + w) + (w * w + w)


def test_control_config_rules():
  with pytest.raises(ValueError, match=r"control.trajectory=True is invalid: allowed False with "
                     r"data.kind='simple'"):
    load_config("configs/spine.py", ["control.trajectory=True"])
  with pytest.raises(ValueError, match=r"control.objects=1 is invalid: allowed at least "
                     r"data.max_objects=3"):
    load_config("configs/scenes_t2v.py", ["control.trajectory=True", "control.objects=1"])
  with pytest.raises(ValueError, match=r"control.camera_caption_dropout=0.5 is invalid: "
                     r"allowed 0 with control.camera=False"):
    load_config("configs/spine.py", ["control.camera_caption_dropout=0.5"])


def test_training_reaches_the_control_inputs_and_dropout_removes_them(randomized_dit):
  dit = randomized_dit(control_token_features=F, control_frame_features=G)
  graphdef, state = nnx.split(dit)
  z, _, text, mask, control = inputs(frames=3)
  ids = jnp.ones(mask.shape, jnp.int32)
  batch = dict(latents=z, ids=ids, mask=mask, empty_ids=ids, empty_mask=mask,
               control_tokens=jnp.abs(control.tokens), control_frames=control.frames)

  @functools.partial(jax.jit, static_argnums=1)
  def grads(state, dropout):
    def loss(state):  # the denoiser's interface, with a fixed text embedding
      model = lambda x, t, ids, m, tm, off, control=None: nnx.merge(graphdef, state)(  # noqa
          x, t, text, m, tm, off, control)
      cfg = section("control", objects=2, dropout=dropout)  # F = 12 features x 2 slots
      return denoiser_loss(model, batch, jax.random.key(0), section("diffusion"), control=cfg)[0]
    return jax.grad(loss)(state)

  for dropout, reached in ((0.0, True), (1.0, False)):
    g = grads(state, dropout)
    for layer in (g["control_tokens"], g["control_frames_in"]):
      assert (np.abs(np.asarray(layer["kernel"][...])).max() > 0) == reached


def test_drop_control_drops_per_object_and_per_clip():
  tokens = jnp.ones((64, 1, 2, 6 * 3))  # 3 object slots, the slot last
  frames = jnp.ones((64, 1, 5))
  out = drop_control(jax.random.key(0), dict(control_tokens=tokens, control_frames=frames),
                     dropout=0.5, objects=3)
  kept = np.asarray(out.tokens).reshape(64, 1, 2, 6, 3)
  per_object = kept[:, 0, 0, 0, :]  # [B, K]: each slot kept or dropped whole
  assert np.all(kept == per_object[:, None, None, None, :])
  assert 0.3 < per_object.mean() < 0.7 and len({tuple(r) for r in per_object}) > 4
  cam = np.asarray(out.frames)[:, 0, 0]
  assert set(cam.tolist()) == {0.0, 1.0} and np.all(np.asarray(out.frames) == cam[:, None, None])
  assert drop_control(jax.random.key(0), {}, dropout=0.5, objects=3) is None


def test_camera_caption_dropout_swaps_the_caption_only_where_the_camera_path_is_given():
  """control.camera_caption_dropout: a clip whose camera path is kept sees the caption without
  its camera clause with the given probability; a clip whose path was dropped keeps its words."""
  b, length = 256, 6
  z = jnp.zeros((b, 2, 2, 2, 4))
  ids, free = jnp.ones((b, length), jnp.int32), jnp.full((b, length), 2, jnp.int32)
  mask = jnp.ones((b, length), bool)
  batch = dict(latents=z, ids=ids, mask=mask, empty_ids=ids * 0, empty_mask=mask,
               camera_free_ids=free, camera_free_mask=mask, control_frames=jnp.ones((b, 2, 5)))
  seen = {}

  def model(x, t, ids, m, tm, off, control=None):  # records what the DiT was given
    seen.update(ids=ids, camera=control.frames[:, 0, -1])
    return jnp.zeros_like(x)

  def run(dropout, caption_dropout):
    cfg = section("control", objects=1, dropout=dropout, camera_caption_dropout=caption_dropout)
    diffusion = section("diffusion", text_dropout=0.0)
    denoiser_loss(model, batch, jax.random.key(1), diffusion, control=cfg)
    return np.asarray(seen["ids"][:, 0]), np.asarray(seen["camera"])

  words, camera = run(0.0, 0.0)
  assert np.all(words == 1)  # off: the whole caption
  words, camera = run(0.0, 1.0)
  assert np.all(camera == 1) and np.all(words == 2)  # every path given: every clause gone
  words, camera = run(1.0, 1.0)
  assert np.all(camera == 0) and np.all(words == 1)  # no path: the words keep the move
  words, camera = run(0.5, 0.5)
  assert np.all(words[camera == 0] == 1)
  assert 0.3 < (words[camera == 1] == 2).mean() < 0.7


def test_the_batch_carries_the_captions_without_their_camera_clause():
  from vdm.data import scene_examples
  from vdm.train.batches import denoiser_batch_fn

  class Words:  # a tokenizer that keeps the words: one id per word
    def encode(self, texts, max_length):
      ids = np.array([[len(w) for w in t.split()][:max_length] + [0] * (max_length - len(t.split()))
                      for t in texts], np.int32)
      return ids, ids != 0

  examples = [scene_examples.make_example(0, "train", i, 16, 16, 5, max_objects=1,
                                          cameras=("pan-left",)) for i in range(2)]
  batch = {k: np.stack([e[k] for e in examples]) for k in ("video", "center", "present", "camera")}
  batch["caption"] = np.array([e["caption"] for e in examples])
  for caption_dropout, expected in ((0.0, False), (0.5, True)):
    config = load_config("configs/control.py:tiny",
                         [f"control.camera_caption_dropout={caption_dropout}"])
    prepare = denoiser_batch_fn(config, lambda video: np.zeros(1), Words(), temporal_stride=2,
                                spatial_stride=4)
    out = prepare(batch)
    assert ("camera_free_ids" in out) == expected
  words = np.asarray(out["camera_free_mask"]).sum(1)
  assert np.all(words == np.asarray(out["mask"]).sum(1) - 4)  # ', the camera pans left'


def test_recache_rewrites_the_cache_under_the_new_prompt(randomized_dit):
  """At a switch, recache re-encodes the cached frames under the chunk's prompt: with the prompt
  unchanged (clean context) that is exactly the cache keep holds; with another it is not."""
  from vdm.generate.streaming import generate_autoregressive
  model = randomized_dit()
  graphdef = nnx.graphdef(model)
  z, _, text, mask, _ = inputs(frames=4)
  other = jax.random.normal(jax.random.key(5), text.shape)

  def velocity(params, x, t, cache, offset):
    state, prompt = params
    return nnx.merge(graphdef, state).forward_cached(x, t, prompt, mask, cache, offset)

  def run(second, switch):
    cache = empty_cache(depth=2, batch_tokens=2 * 4, slots=4, heads=4, head_dim=8)
    prompts = (text, text, second, second)
    return generate_autoregressive(
        velocity, None, z, cache, chunk=1, steps=2,
        params_of_chunk=lambda c: (nnx.state(model), prompts[c]),
        switches=("", "", switch, ""))

  np.testing.assert_allclose(run(text, "recache"), run(text, "keep"), atol=1e-5)
  assert np.abs(run(other, "recache") - run(other, "keep")).max() > 1e-3
  cut = run(other, "cut")
  assert np.abs(cut - run(other, "keep"))[:, 2:].max() > 1e-3
  np.testing.assert_allclose(cut[:, :2], run(other, "keep")[:, :2], atol=1e-6)
