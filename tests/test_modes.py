"""Property tests of every generation mode's noise-level matrix and temporal mask."""
import numpy as np
import pytest

from vdm.generate.modes import (MODES, SPACINGS, Mode, allowed_chunks, chunk_bounds, chunk_ids,
                                generation_mode, noise_levels, parallel_levels, pipeline_modes,
                                register_mode, time_grid)

CASES = [
    ("parallel", dict(steps=5, frames=4)),
    ("image_to_video", dict(steps=5, frames=4)),
    ("keyframes", dict(steps=3, frames=5, shift=3.0)),
    ("autoregressive", dict(steps=4, frames=6, chunk=2)),
    ("autoregressive", dict(steps=3, frames=6, chunk=3, context_level=0.1, shift=2.0)),
    ("autoregressive", dict(steps=2, frames=4, chunk=1, pinned=(0,))),
    ("rolling", dict(steps=4, frames=6, chunk=2)),
    ("rolling", dict(steps=5, frames=3, chunk=1, context_level=0.05, spacing="trailing")),
    ("keyframes_first", dict(steps=3, frames=7, chunk=3)),
    ("keyframes_first", dict(steps=2, frames=5, chunk=2, context_level=0.1, shift=2.0)),
]


def expected_rows(mode, steps, frames, chunk=1, **_):
  if mode == "autoregressive":
    return (frames // chunk) * steps + 1
  if mode == "rolling":
    return steps + frames // chunk
  if mode == "keyframes_first":
    return 2 * steps + 1
  return steps + 1


@pytest.mark.parametrize("mode,kw", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_matrix_contract(mode, kw):
  levels, mask = generation_mode(mode, **kw)
  frames = kw["frames"]
  assert levels.dtype == np.float32 and mask.dtype == bool
  assert levels.shape == (expected_rows(mode, **kw), frames) and mask.shape == (frames, frames)
  assert np.all(np.diff(levels, axis=0) <= 0), "a level increased along a frame's steps"
  assert np.all(levels[-1] == 0), "the last row must be a finished clip"
  assert np.all((levels >= 0) & (levels <= 1))
  # Every frame that is not pinned starts at pure noise and is actually denoised.
  moving = levels[0] > 0
  assert np.all(levels[0][moving] == 1.0)
  assert np.all(np.diag(mask)), "a frame must attend itself"


@pytest.mark.parametrize("mode,pinned", [("image_to_video", [0]), ("keyframes", [0, 6])])
def test_pinned_frames_stay_clean(mode, pinned):
  levels, mask = generation_mode(mode, steps=6, frames=7)
  assert np.all(levels[:, pinned] == 0)
  others = [f for f in range(7) if f not in pinned]
  assert np.all(levels[0, others] == 1.0) and mask.all()
  extra, _ = generation_mode("rolling", steps=4, frames=6, chunk=2, pinned=(0, 1))
  assert np.all(extra[:, :2] == 0) and np.all(extra[0, 2:] == 1.0)


@pytest.mark.parametrize("context_level", [0.0, 0.1])
def test_autoregressive_chunks(context_level):
  steps, frames, chunk = 4, 6, 2
  levels, mask = generation_mode("autoregressive", steps=steps, frames=frames, chunk=chunk,
                                 context_level=context_level)
  n = frames // chunk
  for k in range(n):
    cols = slice(k * chunk, (k + 1) * chunk)
    turn = levels[k * steps:(k + 1) * steps + 1, cols]
    assert np.all(levels[:k * steps + 1, cols] == 1.0), "a chunk waits at pure noise"
    assert np.all(np.diff(turn, axis=0) < 0), "a chunk is denoised in every step of its turn"
    if k < n - 1:
      assert np.allclose(turn[-1], context_level)
      assert np.all(levels[(k + 1) * steps:-1, cols] == np.float32(context_level)), \
          "finished chunks sit at context_level until the end"
    # Only chunk k moves during its turn (besides the final row taking context to 0).
    moved = np.diff(levels[k * steps:(k + 1) * steps], axis=0) != 0
    assert not moved[:, :k * chunk].any() and not moved[:, (k + 1) * chunk:].any()
  # Block-causal: chunk i attends chunk j iff j <= i.
  chunk_of = np.arange(frames) // chunk
  for i in range(frames):
    for j in range(frames):
      assert mask[i, j] == (chunk_of[j] <= chunk_of[i])


def test_rolling_pyramid():
  steps, frames, chunk = 5, 8, 2
  levels, mask = generation_mode("rolling", steps=steps, frames=frames, chunk=chunk)
  assert np.all(np.diff(levels, axis=1) >= 0), "levels rise with frame index at every row"
  # Each chunk runs the previous chunk's schedule one step later.
  for k in range(1, frames // chunk):
    np.testing.assert_array_equal(levels[1:, k * chunk], levels[:-1, (k - 1) * chunk])
  np.testing.assert_allclose(levels[:steps + 1, 0], time_grid(steps))
  assert not mask[0, chunk] and mask[chunk, 0]
  # One chunk of the whole clip is plain parallel generation.
  np.testing.assert_array_equal(
      generation_mode("rolling", steps=steps, frames=4, chunk=4)[0], parallel_levels(steps, 4))


def test_time_grid_spacings():
  np.testing.assert_array_equal(time_grid(8), np.linspace(1.0, 0.0, 9))  # default unchanged
  for spacing in SPACINGS:
    for steps in (1, 7, 10):
      grid = time_grid(steps, spacing=spacing)
      assert grid.shape == (steps + 1,) and grid[-1] == 0 and np.all(np.diff(grid) < 0)
      shifted = time_grid(steps, spacing=spacing, shift=3.0)
      assert np.all(shifted[1:-1] >= grid[1:-1])
  np.testing.assert_allclose(time_grid(10, spacing="trailing"), time_grid(10))
  assert time_grid(7, spacing="trailing")[0] == 1.0
  assert time_grid(10, spacing="leading")[0] == pytest.approx(0.901)  # never pure noise
  np.testing.assert_allclose(time_grid(10, spacing="trailing")[:3], [1.0, 0.9, 0.8])
  # Levels given outright (a few-step generator's list), then shifted like any grid.
  np.testing.assert_allclose(time_grid(3, spacing=(1.0, 0.757, 0.522)), [1, 0.757, 0.522, 0])
  np.testing.assert_allclose(time_grid(4, spacing=(1.0, 0.75, 0.5, 0.25)),
                             time_grid(4))  # the even grid itself
  np.testing.assert_allclose(time_grid(2, shift=3.0, spacing=(1.0, 0.5)), [1, 0.75, 0])
  levels, _ = generation_mode("autoregressive", steps=2, frames=4, chunk=2, shift=3.0,
                              spacing=(1.0, 0.5))
  np.testing.assert_allclose(levels[:, 0], [1, 0.75, 0, 0, 0])


def test_noise_levels_is_the_matrix_of_generation_mode():
  for mode in MODES:
    levels, _ = generation_mode(mode, steps=3, frames=4, chunk=2)
    np.testing.assert_array_equal(noise_levels(mode, steps=3, frames=4, chunk=2), levels)


def test_errors_name_the_option_and_allowed_values():
  with pytest.raises(ValueError, match=r"mode must be one of .*'parallel'.*'rolling'"):
    generation_mode("sideways", steps=4, frames=4)
  with pytest.raises(ValueError,
                     match=r"chunk must divide frames=6 or frames - 1 \(allowed: \[1, 2, 3, 5, 6\]\)"):
    generation_mode("autoregressive", steps=4, frames=6, chunk=4)
  with pytest.raises(ValueError, match="chunk"):
    generation_mode("rolling", steps=4, frames=6, chunk=0)
  for mode in MODES:
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
      generation_mode(mode, steps=0, frames=4)
  with pytest.raises(ValueError, match="frames"):
    generation_mode("parallel", steps=2, frames=0)
  with pytest.raises(ValueError, match=r"context_level must be in \[0, 1\)"):
    generation_mode("autoregressive", steps=2, frames=4, chunk=2, context_level=1.0)
  with pytest.raises(ValueError, match=r"spacing must be one of .*'trailing'"):
    time_grid(4, spacing="cosine")
  for bad in ((1.0, 0.5), (0.5, 0.75, 0.25), (1.0, 0.5, 0.0), (1.5, 0.5, 0.25)):
    with pytest.raises(ValueError, match=r"explicit levels must be 3 decreasing numbers in \(0, 1\]"):
      time_grid(3, spacing=bad)
  with pytest.raises(ValueError, match="pinned frame 9"):
    generation_mode("parallel", steps=2, frames=4, pinned=(9,))


def test_chunks_that_do_not_tile_the_clip_leave_frame_zero_alone():
  # 5 latent frames (a 9-frame clip) in chunks of 4: the causal VAE's image frame, then 4.
  np.testing.assert_array_equal(chunk_ids(5, 4), [0, 1, 1, 1, 1])
  np.testing.assert_array_equal(chunk_ids(6, 2), [0, 0, 1, 1, 2, 2])  # tiles: plain chunks
  assert chunk_bounds(9, 4) == [(0, 1), (1, 5), (5, 9)]
  assert allowed_chunks(5) == [1, 2, 4, 5]
  levels, mask = generation_mode("autoregressive", steps=3, frames=5, chunk=4)
  assert levels.shape == (2 * 3 + 1, 5)
  # Frame 0 finishes in the first 3 steps while frames 1..4 wait at the top level.
  assert np.all(levels[3, 1:] == levels[0, 1:]) and levels[3, 0] == 0.0
  assert mask[0].tolist() == [True, False, False, False, False]
  assert mask[1:, :].all()
  rolling, _ = generation_mode("rolling", steps=3, frames=5, chunk=4)
  assert rolling.shape == (3 + 2, 5)


@pytest.mark.parametrize("context_level", [0.0, 0.2])
def test_keyframes_first_finishes_the_keyframes_before_any_frame_between_moves(context_level):
  steps, frames, chunk = 4, 9, 4  # chunks [0], [1..4], [5..8]: keyframes 0, 1, 5 and 8
  levels, mask = generation_mode("keyframes_first", steps=steps, frames=frames, chunk=chunk,
                                 context_level=context_level)
  keys = [0, 1, 5, 8]
  between = [f for f in range(frames) if f not in keys]
  # Phase 1: only the keyframes move, all together, 1 -> context_level.
  assert np.all(levels[:steps + 1, between] == 1.0)
  assert np.all(np.diff(levels[:steps + 1, keys], axis=0) < 0)
  assert np.allclose(levels[steps, keys], context_level)
  # Phase 2: the keyframes sit still at context_level; the frames between go 1 -> 0.
  assert np.all(levels[steps:-1, keys] == np.float32(context_level))
  np.testing.assert_allclose(levels[steps:, between[0]], time_grid(steps), rtol=1e-6)
  assert np.all(levels[-1] == 0) and mask.all()  # bidirectional: both sides' keyframes seen


def test_a_registered_mode_is_offered_everywhere():
  """Adding a mode is one levels function and one registration: the pipeline, the CLI and the
  config then accept it."""
  from vdm import cli
  from vdm.config import load_config

  def reverse_levels(steps, frames, *, shift=1.0, spacing="linear"):
    return parallel_levels(steps, frames, shift=shift, spacing=spacing)[:, ::-1].copy()

  register_mode(Mode("reverse_test", "a test mode", reverse_levels))
  try:
    assert "reverse_test" in pipeline_modes()
    config = load_config("configs/spine.py:tiny", ["sample.mode='reverse_test'"])
    assert config.sample.mode == "reverse_test"
    args = cli.build_parser().parse_args(["sample", "--prompt", "a", "--out", "a.mp4",
                                          "--mode", "reverse_test"])
    assert args.mode == "reverse_test"
    levels, mask = generation_mode("reverse_test", steps=3, frames=4)
    assert levels.shape == (4, 4) and mask.all()
  finally:
    del MODES["reverse_test"]
  with pytest.raises(ValueError, match="sample.mode"):
    load_config("configs/spine.py:tiny", ["sample.mode='reverse_test'"])
