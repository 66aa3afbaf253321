"""The learned upscaler: trains through the one loop at tiny size, exports, and runs as a post
stage; its residual starts at zero, so an untrained model is exactly bicubic."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vdm.config import ConfigError, load_config
from vdm.post import sr
from vdm.post.chain import parse_pipeline
from vdm.post.upscale import upscale
from vdm.train.run import run_training
from vdm.train.upscaler import temporal_difference_mse


def test_untrained_model_is_bicubic_and_sees_neighbours():
  model = sr.TemporalSR(2, width=8, blocks=1, rngs=nnx.Rngs(0))
  lr = jax.random.uniform(jax.random.key(0), (1, 3, 8, 8, 3))
  np.testing.assert_allclose(model(lr), sr.bicubic(lr, 2), atol=1e-6)
  # With random output weights, changing frame 0 changes frame 1's output (a neighbour) but not
  # frame 2's (two frames away).
  graphdef, params = nnx.split(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  model = nnx.merge(graphdef, jax.tree.unflatten(
      treedef, [0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
  changed = lr.at[:, 0].add(0.5)
  diff = np.abs(np.asarray(model(changed) - model(lr))).max(axis=(0, 2, 3, 4))
  assert diff[1] > 1e-3 and diff[2] == 0.0


def test_self_ensemble_of_eight_is_flip_and_transpose_equivariant():
  # A conv net is not: with random weights, upscaling a flipped clip is not the flipped upscale.
  # Averaged over all eight flips/transposes (each mapped back), it is, to float rounding.
  model = sr.TemporalSR(2, width=8, blocks=1, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  state = jax.tree.unflatten(treedef, [0.3 * jax.random.normal(k, x.shape)
                                       for k, x in zip(keys, leaves)])
  lr = jax.random.uniform(jax.random.key(2), (3, 6, 10, 3))  # not square: transposes reshape

  def gap(ensemble, k):
    out = sr.predict(graphdef, state, lr, ensemble)
    moved = sr.predict(graphdef, state, sr.dihedral(lr, k), ensemble)
    return float(np.abs(np.asarray(moved - sr.dihedral(out, k))).max())

  assert all(gap(1, k) > 1e-3 for k in range(1, 8))
  assert all(gap(8, k) < 1e-5 for k in range(1, 8))
  # Two (identity and left-right) are equivariant to that flip only.
  assert gap(2, 1) < 1e-5 and gap(2, 2) > 1e-3


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  os.environ["VDM_NO_PROGRESS"] = "1"
  return run_training(load_config("configs/sr.py:2,tiny"),
                      str(tmp_path_factory.mktemp("sr_tiny")))


def test_trained_model_loads_and_upscales_through_the_pipeline(tiny_model):
  frames = (np.random.default_rng(0).random((5, 12, 16, 3)) * 255).astype(np.uint8)
  out = upscale(frames, 2, method="learned", model=tiny_model, chunk=2)
  assert out.shape == (5, 24, 32, 3) and out.dtype == np.uint8
  # Chunked (with one neighbour of overlap) equals one pass over the clip.
  np.testing.assert_array_equal(out, upscale(frames, 2, method="learned", model=tiny_model,
                                             chunk=16))
  (stage,) = parse_pipeline(f"upscale(2, method=learned, model={tiny_model})")
  np.testing.assert_array_equal(stage(frames), out)
  (stage,) = parse_pipeline(f"upscale(2, method=learned, model={tiny_model}, ensemble=4)")
  np.testing.assert_array_equal(stage(frames), upscale(frames, 2, method="learned",
                                                       model=tiny_model, ensemble=4))


def test_steady_learned_upscale_flickers_no_more_than_bicubic_on_a_still_noisy_clip(tiny_model):
  # A still scene seen through per-frame sensor noise (+-2 levels): the steadied learned output's
  # frame-to-frame change equals bicubic's in the still pixels, where the raw one may amplify it.
  rng = np.random.default_rng(0)
  scene = rng.integers(40, 200, (1, 12, 16, 3))
  frames = np.clip(scene + rng.integers(-2, 3, (6, 12, 16, 3)), 0, 255).astype(np.uint8)
  change = lambda v: np.abs(np.diff(v.astype(np.float64), axis=0)).mean()  # noqa: E731
  bicubic = upscale(frames, 2)
  steady = upscale(frames, 2, method="learned", model=tiny_model, steady=1.0)
  raw = upscale(frames, 2, method="learned", model=tiny_model, steady=0.0)
  assert change(steady) <= change(bicubic) + 0.5  # + 8-bit rounding of the output
  assert (steady != raw).any()
  (stage,) = parse_pipeline(f"upscale(2, method=learned, model={tiny_model}, steady=0)")
  np.testing.assert_array_equal(stage(frames), raw)


@pytest.mark.parametrize("spec, message", [
    ("upscale(3, method=learned)", "allowed \\[2, 4\\]"),
    ("upscale(2, method=learned, steady=2)", "steady must be a number in \\[0, 1\\]"),
    ("upscale(2, steady=0.5)", "steady= applies only to method=learned"),
    ("upscale(2, method=learned, model=/nonexistent)", "not found"),
    ("upscale(2, model=/x)", "only to method=learned"),
    ("upscale(2, method=learned, ensemble=3)", "ensemble must be one of \\(1, 2, 4, 8\\)"),
    ("upscale(2, method=learned, ensemble=16)", "ensemble must be an integer in \\[1, 8\\]"),
    ("upscale(2, ensemble=4)", "ensemble= applies only to method=learned"),
])
def test_bad_learned_upscale_arguments_are_named(spec, message):
  with pytest.raises(ValueError, match=message):
    parse_pipeline(spec)


def test_bad_sr_config_is_named():
  with pytest.raises(ConfigError, match="data.short_side"):
    load_config("configs/sr.py:4,tiny", ["data.short_side=12"])
  with pytest.raises(ConfigError, match="loss.temporal_weight"):
    load_config("configs/sr.py:2,tiny", ["loss.temporal_weight=-1.0"])
  with pytest.raises(ConfigError, match="loss.input_noise"):
    load_config("configs/sr.py:2,tiny", ["loss.input_noise=30.0"])
  with pytest.raises(ValueError, match="FACTOR\\[,tiny\\]\\[,scenes\\]"):
    load_config("configs/sr.py:2,photos")
  assert load_config("configs/sr.py:2,tiny,scenes").data.kind == "scenes"


def test_training_input_noise_is_fresh_per_frame_and_off_in_evaluation():
  hr = jnp.full((2, 3, 16, 16, 3), 0.5)
  clean = sr.degrade(hr, 2)
  np.testing.assert_array_equal(clean, sr.degrade(hr, 2, noise_std=0.0, rng=jax.random.key(0)))
  noisy = sr.degrade(hr, 2, noise_std=jnp.array([0.0, 3.0]), rng=jax.random.key(0))
  np.testing.assert_array_equal(noisy[0], clean[0])  # per-clip std: clip 0 drew 0
  levels = np.asarray(noisy[1] - clean[1]) * 255
  assert 2.0 < levels.std() < 4.0  # about 3 levels, quantised
  assert not np.array_equal(noisy[1, 0], noisy[1, 1])  # fresh in every frame


def test_temporal_loss_sees_flicker_not_steady_error():
  hr = jax.random.uniform(jax.random.key(0), (1, 4, 8, 8, 3))
  steady = hr + 0.1  # the same error in every frame: no flicker added
  flicker = hr + 0.1 * (-1.0) ** np.arange(4)[None, :, None, None, None]
  assert float(temporal_difference_mse(steady, hr)) < 1e-12
  assert float(temporal_difference_mse(flicker, hr)) == pytest.approx(0.04, rel=1e-5)
  # Both have the same per-pixel error; only the temporal term tells them apart.
  np.testing.assert_allclose(np.mean((steady - hr) ** 2), np.mean((flicker - hr) ** 2),
                             rtol=1e-5)


def test_eval_upscale_suite_reports_every_method(tiny_model, tmp_path, monkeypatch):
  from vdm import cli
  from vdm.eval import run
  import json
  out = tmp_path / "up.json"
  # 3 frames of each real clip instead of 16: the same table, in seconds.
  clips = run.real_degradation_clips
  monkeypatch.setattr(run, "real_degradation_clips", lambda factor, frames=16: {
      name: video[:, :48, :64] for name, video in clips(factor, 3).items()})
  assert cli.main(["eval", "--suite", "upscale", "--checkpoint", tiny_model, "--num", "2",
                   "--out", str(out)]) == 0
  rows = json.load(open(out))["rows"]
  methods = {k.split(" | ")[1] for k in rows}
  assert methods == {"bicubic", "lanczos", "learned, raw", "learned"}
  assert any(k.startswith("scenes test (2 clips") for k in rows)
  assert any(k.startswith("photo_pans test (2 clips") for k in rows)  # its own training data
  for r in rows.values():
    assert np.isfinite(r["psnr"]) and r["temporal"] >= 0 and r["flicker"] >= 0
  # Real clips degraded by PIL and ffmpeg: every clip x degradation x method, vdm's bicubic
  # within 0.05 dB of PIL's on each.
  from vdm.eval.real_degradations import DEGRADATIONS
  real = json.load(open(out))["real_degradations"]
  cases = {k.rsplit(" | ", 1)[0] for k in real}
  assert {c.split(" | ")[1] for c in cases} == set(DEGRADATIONS)
  assert {c.split(" ")[0] for c in cases} == {"carphone", "bikes"}
  for case in cases:
    assert abs(real[f"{case} | bicubic"]["psnr"] - real[f"{case} | bicubic (PIL)"]["psnr"]) < 0.05
    assert np.isfinite(real[f"{case} | learned"]["psnr"])
  assert "Learned beats bicubic in PSNR on" in open(out.with_suffix(".md")).read()


def test_still_pixels_and_flicker_of_an_upscale():
  from vdm.eval.metrics.consistency import flicker
  from vdm.eval.run import still_pixels
  clip = np.full((3, 4, 4, 3), 100, np.uint8)
  clip[1, 0, 0] = 103  # one pixel moves by 3 levels (not still), one by 1 level (still)
  clip[2, 1, 1] = 101
  still = still_pixels(clip)
  assert still.shape == (2, 4, 4) and not still[0, 0, 0] and not still[1, 0, 0]
  assert still[1, 1, 1] and still.sum() == 2 * 16 - 2
  noisy = clip.astype(np.float64) / 255
  noisy[2] += 0.01  # the whole last frame brightens: flicker on still pixels
  assert flicker(clip, still)["mean"] < flicker(noisy, still)["mean"]


def test_shuffle_frames_reorders_a_share_of_clips():
  from vdm.train.upscaler import shuffle_frames
  video = jnp.broadcast_to(jnp.arange(8.0)[None, :, None, None, None], (64, 8, 2, 2, 3))
  np.testing.assert_array_equal(shuffle_frames(jax.random.key(0), video, 0.0), video)
  out = np.asarray(shuffle_frames(jax.random.key(0), video, 0.5))[:, :, 0, 0, 0]  # [64, 8]
  np.testing.assert_array_equal(np.sort(out, axis=1), np.tile(np.arange(8.0), (64, 1)))
  moved = (out != np.arange(8.0)).any(axis=1)
  assert 20 < moved.sum() < 44  # about half the clips (a permutation may be the identity)
  np.testing.assert_array_equal(out, np.asarray(shuffle_frames(jax.random.key(0), video,
                                                               0.5))[:, :, 0, 0, 0])
