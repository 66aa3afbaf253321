"""The long-clip coherence metric (vdm/eval/metrics/coherence.py) on clips with known answers:
ground truth rendered at 1x-16x the training length passes; clips that break the prompt in
their last quarter fail, each on the check it breaks."""
import numpy as np
import pytest

from vdm.data import simple
from vdm.eval.metrics.coherence import coherence, quarter, summarize

H = W = 32
FRAMES = 9


def _clip(index, length):
  e = simple.long_example(0, index, H, W, FRAMES, length)
  return e, dict(color=int(e["color"]), direction=int(e["direction"]),
                 speed_range=simple.speed_range(H, W, FRAMES, int(e["direction"])))


@pytest.mark.parametrize("length", [1, 4, 8, 16])
def test_ground_truth_keeps_motion_and_identity(length):
  rows = []
  for i in range(12):
    e, caption = _clip(i, length)
    row = coherence(e["video"], **caption)
    assert row["coherent"], (i, row)
    np.testing.assert_allclose(row["speed"], e["speed"], atol=0.15)
    rows.append(row)
  assert summarize(rows)["coherent"] == 1.0


def test_broken_clips_fail_on_what_they_break():
  for i in range(8):
    e, caption = _clip(i, 4)
    video = e["video"]
    n = quarter(len(video))
    reversed_ = video[::-1]
    assert not coherence(reversed_, **caption)["motion_ok"]
    frozen = video.copy()
    frozen[-n:] = video[-n]  # the object stops for the last quarter
    result = coherence(frozen, **caption)
    assert not result["motion_ok"] and result["colour_ok"] and abs(result["speed"]) < 0.2
    # the object turns to the background colour (it vanishes) in the last quarter
    gone = video.copy()
    gone[-n:] = simple.PALETTE[int(e["background"])]
    assert not coherence(gone, **caption)["colour_ok"]
    # recoloured in the last quarter
    other = (int(e["color"]) + 1) % len(simple.COLORS)
    other += other == int(e["background"])
    other %= len(simple.COLORS)
    recoloured = video.copy()
    obj = np.all(video[-n:] == simple.PALETTE[int(e["color"])], axis=-1)
    recoloured[-n:][obj] = simple.PALETTE[other]
    result = coherence(recoloured, **caption)
    assert not result["colour_ok"] and not result["coherent"]
    # too fast: every fourth frame (four times the speed)
    long, _ = _clip(i, 16)
    fast = long["video"][::4][:len(video)]
    assert not coherence(fast, **caption)["motion_ok"]


def test_shrunk_object_fails_the_size_check():
  e, caption = _clip(3, 4)
  video = e["video"].copy()
  n = quarter(len(video))
  spec = simple.sample_spec(simple.example_rng(0, "test", 3), H, W, FRAMES, "test", wrap=True)
  for t in range(len(video) - n, len(video)):
    cx, cy = e["center"][t]
    video[t] = simple.PALETTE[spec.background]
    small = simple.shape_mask(spec.shape, cx, cy, spec.radius * 0.5, H, W, wrap=True)
    video[t][small] = simple.PALETTE[spec.color]
  result = coherence(video, **caption)
  assert result["motion_ok"] and result["colour_ok"] and not result["size_ok"]
  assert result["size_ratio"] < 0.5
