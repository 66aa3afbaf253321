"""Level schemes and temporal masks of the denoiser's training objective."""
import jax
import jax.numpy as jnp
import numpy as np

from vdm.diffusion import flow_matching_loss
from vdm.generate.modes import block_causal_mask, chunk_ids
from vdm.config import section
from vdm.diffusion.objectives import shifted_levels
from vdm.train.objectives import (denoiser_loss, teacher_forcing_levels, training_inputs,
                                  training_mask)


def test_training_mask_is_full_or_block_causal_with_the_given_probability():
  full, ids = training_mask(jax.random.key(0), 5, causal_prob=0.0, causal_chunks=(1, 4))
  assert np.asarray(full).all() and not np.asarray(ids).any()
  seen = {1: 0, 4: 0, "full": 0}
  for i in range(200):
    mask, ids = training_mask(jax.random.key(i), 5, causal_prob=0.5, causal_chunks=(1, 4))
    mask, ids = np.asarray(mask), np.asarray(ids)
    if mask.all():
      seen["full"] += 1
      continue
    chunk = 1 if ids[-1] == 4 else 4
    np.testing.assert_array_equal(mask, block_causal_mask(5, chunk))
    np.testing.assert_array_equal(ids, chunk_ids(5, chunk))
    seen[chunk] += 1
  assert 70 < seen["full"] < 130 and seen[1] > 30 and seen[4] > 30


def test_teacher_forcing_levels_clean_before_noisy_target_pure_noise_after():
  ids = jnp.asarray(chunk_ids(5, 1))
  levels, weights = teacher_forcing_levels(jax.random.key(0), 256, ids, kind="uniform")
  levels, weights = np.asarray(levels), np.asarray(weights)
  targets = weights.argmax(1)
  assert (weights.sum(1) == 1).all() and set(targets) == set(range(5))
  for row, target in zip(levels, targets):
    assert (row[:target] == 0).all() and (row[target + 1:] == 1).all()
    assert 0 < row[target] < 1


def test_weighted_flow_loss_scores_only_the_weighted_frames():
  r = jax.random.split(jax.random.key(0), 3)
  v, x0, noise = (jax.random.normal(k, (2, 3, 4, 4, 2)) for k in r)
  np.testing.assert_allclose(flow_matching_loss(v, x0, noise, jnp.ones((2, 3))),
                             flow_matching_loss(v, x0, noise), rtol=1e-6)
  weights = jnp.zeros((2, 3)).at[1, 2].set(1.0)
  np.testing.assert_allclose(flow_matching_loss(v, x0, noise, weights),
                             flow_matching_loss(v[1:, 2:], x0[1:, 2:], noise[1:, 2:]), rtol=1e-6)


def _batch():
  return dict(latents=jax.random.normal(jax.random.key(1), (4, 5, 2, 2, 2)),
              ids=jnp.ones((4, 3), jnp.int32), mask=jnp.ones((4, 3), bool),
              empty_ids=jnp.zeros((4, 3), jnp.int32), empty_mask=jnp.zeros((4, 3), bool))


def test_denoiser_loss_passes_masks_and_frame_offsets_to_the_model():
  seen = []

  def model(z, levels, ids, mask, temporal_mask, frame_offset):
    seen.append((np.asarray(temporal_mask), int(frame_offset), np.asarray(levels)))
    return jnp.zeros_like(z)

  for i in range(40):
    denoiser_loss(model, _batch(), jax.random.key(i), section(
        "diffusion", timestep_sampling="logit_normal", teacher_forcing=True, causal_prob=1.0,
        causal_chunks=(1,), max_frame_offset=7))
  offsets = [offset for _, offset, _ in seen]
  assert min(offsets) >= 0 and max(offsets) <= 7 and len(set(offsets)) > 3
  for mask, _, levels in seen:
    np.testing.assert_array_equal(mask, block_causal_mask(5, 1))
    assert ((levels == 0) | (levels == 1) | ((levels > 0) & (levels < 1))).all()
  seen.clear()
  denoiser_loss(model, _batch(), jax.random.key(0),  # defaults: full mask, offset 0
                section("diffusion", timestep_sampling="logit_normal"))
  assert seen[0][0].all() and seen[0][1] == 0


def test_temporal_consistency_loss_is_zero_for_the_true_velocity_and_counts_only_changes():
  from vdm.diffusion import interpolate, temporal_consistency_loss, velocity_target
  r = jax.random.split(jax.random.key(5), 3)
  x0 = jax.random.normal(r[0], (2, 4, 3, 3, 2))
  noise = jax.random.normal(r[1], x0.shape)
  levels = jax.random.uniform(r[2], (2, 4))
  x_t = interpolate(x0, noise, levels)
  assert float(temporal_consistency_loss(velocity_target(x0, noise), x_t, levels, x0)) < 1e-10
  # An error shared by every frame (a constant offset of the clean estimate) is not a change.
  shift = 0.3 / jnp.maximum(levels, 1e-3)[:, :, None, None, None]
  off = velocity_target(x0, noise) - shift  # x0_hat = x0 + 0.3 in every frame
  assert float(temporal_consistency_loss(off, x_t, levels, x0)) < 1e-8
  flicker = velocity_target(x0, noise).at[:, 1].add(-1.0)  # one frame wrong
  assert float(temporal_consistency_loss(flicker, x_t, levels, x0)) > 1e-3


def test_warp_previous_moves_content_by_the_flow():
  from vdm.diffusion import warp_previous
  x = jax.random.normal(jax.random.key(0), (1, 2, 6, 7, 3))
  flow = jnp.broadcast_to(jnp.array([2.0, 1.0]), (1, 1, 6, 7, 2))  # 2 cells right, 1 down
  warped = warp_previous(x, flow)
  np.testing.assert_allclose(warped[0, 0, 1:, 2:], x[0, 0, :-1, :-2], atol=1e-6)
  half = warp_previous(x, flow * 0.5)[0, 0, 2:, 2:]  # (1, 0.5): bilinear between two rows
  np.testing.assert_allclose(half, 0.5 * (x[0, 0, 1:-1, 1:-1] + x[0, 0, 2:, 1:-1]), atol=1e-5)


def test_latent_motion_of_a_rendered_clip_is_exact():
  from vdm.data import simple
  import dataclasses
  spec = simple.sample_spec(simple.example_rng(0, "train", 3), 32, 32, 9, "train")
  # 2 px per frame: one latent cell (4 px) per latent frame (2 frames), so pooled cells move whole.
  spec = dataclasses.replace(spec, speed=2.0, start=(8.3, 15.6))
  video, truth = simple.render_clip(spec, 32, 32, 9)
  flow, valid = simple.latent_motion(truth["shape"], truth["center"], truth["radius"], 32, 32,
                                     temporal_stride=2, spatial_stride=4)
  assert flow.shape == (4, 8, 8, 2) and valid.shape == (4, 8, 8)
  # Pooled to the latent grid, each valid cell of frame l+1 equals frame l at the flow's source
  # (whole-cell moves only, so nearest sampling is exact).
  pooled = video.reshape(9, 8, 4, 8, 4, 3).mean(axis=(2, 4))[::2]
  step = np.diff(truth["center"][::2], axis=0) / 4
  assert np.allclose(np.abs(step).sum(-1), 1.0)
  for l in range(4):
    warped = np.asarray(synthetic_warp(pooled[l:l + 2], flow[l]))
    np.testing.assert_allclose(warped[valid[l]], pooled[l + 1][valid[l]], atol=1e-4)
    assert not np.allclose(pooled[l], pooled[l + 1])  # the frame did change
  assert valid.any() and (~valid).any()  # the edges and disoccluded cells are left out
  moving = np.abs(flow).sum(-1) > 0
  np.testing.assert_allclose(flow[moving].reshape(-1, 2)[0],
                             step[np.nonzero(moving)[0][0]], atol=1e-6)


def synthetic_warp(pair, flow):
  from vdm.diffusion import warp_previous
  return warp_previous(jnp.asarray(pair)[None], jnp.asarray(flow)[None, None])[0, 0]


def test_motion_supervision_penalises_wrong_motion_not_right_motion():
  from vdm.diffusion import interpolate, temporal_consistency_loss, warp_previous
  r = jax.random.split(jax.random.key(1), 3)
  first = jax.random.normal(r[0], (1, 1, 8, 8, 2))
  flow = jnp.broadcast_to(jnp.array([1.0, 0.0]), (1, 2, 8, 8, 2))
  frames = [first]
  for _ in range(2):  # content moving 1 cell right per frame
    frames.append(warp_previous(jnp.concatenate([frames[-1], frames[-1]], 1), flow[:, :1]))
  x0 = jnp.concatenate(frames, 1)
  valid = jnp.ones((1, 2, 8, 8), bool).at[..., 0].set(False)  # column 0 is disoccluded
  noise = jax.random.normal(r[1], x0.shape)
  levels = jnp.full((1, 3), 0.5)
  x_t = interpolate(x0, noise, levels)

  def loss(x0_hat, **kw):  # the velocity whose clean estimate is x0_hat
    return float(temporal_consistency_loss((x_t - x0_hat) / 0.5, x_t, levels, x0, **kw))

  error = 0.2 * jax.random.normal(r[2], x0.shape[:1] + (1,) + x0.shape[2:])
  carried = x0 + jnp.concatenate(  # an error that moves with the object
      [error, warp_previous(jnp.concatenate([error, error], 1), flow[:, :1])[:, :1],
       warp_previous(jnp.concatenate([error, error], 1), 2 * flow[:, :1])[:, :1]], 1)
  assert loss(carried, flow=flow, valid=valid) < 1e-8  # travels with the motion: no penalty
  assert loss(carried) > 1e-3  # the plain frame difference penalises it
  still = jnp.concatenate([x0[:, :1]] * 3, 1)  # the object does not move
  assert loss(still, flow=flow, valid=valid) > 1e-2


def test_ablation_configs_build_and_differ_in_one_field():
  from vdm.config import load_config
  base = load_config("configs/temporal_ablations.py:baseline,tiny")
  assert load_config("configs/temporal_ablations.py:full,tiny").dit.attention == "full"
  assert load_config("configs/temporal_ablations.py:local,tiny").dit.temporal_window == 1
  assert load_config(
      "configs/temporal_ablations.py:consistency,tiny").diffusion.temporal_consistency_weight == 1
  assert load_config(
      "configs/temporal_ablations.py:motion,tiny").diffusion.motion_supervision_weight == 1
  assert base.diffusion.per_frame_levels_prob > 0  # Diffusion Forcing: every mode runs


def test_frozen_parameters_get_no_update_not_even_weight_decay():
  import ml_collections
  import optax
  from vdm.train.loop import make_optimizer
  cfg = ml_collections.ConfigDict(dict(learning_rate=0.1, warmup_steps=0, steps=10,
                                       grad_clip=1.0, weight_decay=0.5))
  params = {"text": {"w": jnp.ones(3)}, "dit": {"w": jnp.ones(3)}}
  tx = make_optimizer(cfg, frozen=("text",))
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["text"]["w"], jnp.ones(3))
  assert np.all(np.asarray(params["dit"]["w"]) < 1.0)


def test_per_frame_levels_are_shared_within_a_temporal_patch_group():
  """With temporal_patch = 2 the independent (Diffusion Forcing) levels of 5 latent frames are
  drawn per token frame [0], [1, 2], [3, 4]; with 1 they are the per-frame levels as before."""
  import pytest
  from vdm.train.objectives import training_levels
  rng = jax.random.key(3)
  grouped = np.asarray(training_levels(rng, 64, 5, kind="uniform", per_frame_prob=1.0,
                                       temporal_patch=2))
  np.testing.assert_array_equal(grouped[:, 1], grouped[:, 2])
  np.testing.assert_array_equal(grouped[:, 3], grouped[:, 4])
  assert not np.allclose(grouped[:, 0], grouped[:, 1]) and not np.allclose(grouped[:, 2],
                                                                           grouped[:, 3])
  ungrouped = training_levels(rng, 64, 5, kind="uniform", per_frame_prob=1.0)
  np.testing.assert_array_equal(training_levels(rng, 64, 5, kind="uniform", per_frame_prob=1.0,
                                                temporal_patch=1), ungrouped)
  assert len(np.unique(np.asarray(ungrouped)[0])) == 5
  with pytest.raises(ValueError, match="dit.temporal_patch=1"):
    denoiser_loss(None, dict(latents=jnp.zeros((1, 5, 2, 2, 1))), rng,
                  section("diffusion", causal_prob=0.5), temporal_patch=2)


def test_train_shift_moves_the_drawn_levels_toward_noise_and_keeps_given_frames_clean():
  keys = jax.random.split(jax.random.key(3), 4)
  cfg = dict(per_frame_levels_prob=0.5, given_frames=1, given_prob=0.5)
  plain = training_inputs(*keys, 64, 5, section("diffusion", **cfg))[0]
  shifted = training_inputs(*keys, 64, 5, section("diffusion", train_shift=3.0, **cfg))[0]
  np.testing.assert_allclose(shifted, shifted_levels(plain, 3.0), rtol=1e-6)
  assert (np.asarray(shifted)[np.asarray(plain) == 0] == 0).all()  # given frames stay clean
  noisy = np.asarray(plain) > 0
  assert (np.asarray(shifted)[noisy] > np.asarray(plain)[noisy]).all()
  # Uniform levels shifted by 3: P(t' > 1/2) = P(t > 1/4) = 3/4.
  many = training_inputs(*jax.random.split(jax.random.key(4), 4), 4096, 1,
                         section("diffusion", train_shift=3.0))[0]
  assert abs(float((many > 0.5).mean()) - 0.75) < 0.03
