"""Synthetic captioned videos, their TFDS builder and the grain pipeline."""
import itertools

import numpy as np
import pytest

from vdm.data import simple
from vdm.data import simple_builder
from vdm.data.loader import make_loader

SIZES = [(16, 16, 5), (32, 32, 9), (64, 64, 9), (24, 40, 7)]


def _specs(split, height, width, frames, num, seed=0):
  return [simple.sample_spec(simple.example_rng(seed, split, i), height, width, frames,
                             split) for i in range(num)]


def test_same_seed_same_bytes_other_seed_differs():
  a = list(simple.generate_examples(3, "train", 4, 32, 32, 9))
  b = list(simple.generate_examples(3, "train", 4, 32, 32, 9))
  c = list(simple.generate_examples(4, "train", 4, 32, 32, 9))
  for (ka, ea), (kb, eb) in zip(a, b):
    assert ka == kb
    assert ea["video"].tobytes() == eb["video"].tobytes()
    assert ea["caption"] == eb["caption"]
    np.testing.assert_array_equal(ea["center"], eb["center"])
  assert [e["video"].tobytes() for _, e in a] != [e["video"].tobytes() for _, e in c]


def test_example_depends_only_on_seed_split_index():
  short = list(simple.generate_examples(0, "test", 2, 16, 16, 5))
  long = list(simple.generate_examples(0, "test", 5, 16, 16, 5))
  for (_, x), (_, y) in zip(short, long):
    assert x["video"].tobytes() == y["video"].tobytes()
  train0 = next(simple.generate_examples(0, "train", 1, 16, 16, 5))[1]
  assert train0["video"].tobytes() != long[0][1]["video"].tobytes()


def test_held_out_compositions_split_train_and_test():
  for spec in _specs("train", 32, 32, 9, 300):
    assert not simple.is_held_out(spec.color, spec.shape, spec.direction, spec.background)
    assert spec.color != spec.background
  for spec in _specs("test", 32, 32, 9, 100):
    assert simple.is_held_out(spec.color, spec.shape, spec.direction, spec.background)
    assert spec.color != spec.background

  compositions = [k for k in itertools.product(range(len(simple.COLORS)),
                                               range(len(simple.SHAPES)),
                                               range(len(simple.DIRECTIONS)),
                                               range(len(simple.COLORS))) if k[0] != k[3]]
  held_out = [k for k in compositions if simple.is_held_out(*k)]
  assert 0.1 < len(held_out) / len(compositions) < 0.2
  train = [k for k in compositions if not simple.is_held_out(*k)]
  # Every single word value must still be seen in training.
  for axis, size in enumerate([len(simple.COLORS), len(simple.SHAPES),
                               len(simple.DIRECTIONS), len(simple.COLORS)]):
    assert {k[axis] for k in train} == set(range(size))


@pytest.mark.parametrize("height,width,frames", SIZES)
def test_truth_matches_pixels_and_object_stays_inside(height, width, frames):
  for spec in _specs("train", height, width, frames, 30) + _specs("test", height, width,
                                                                  frames, 10):
    video, truth = simple.render_clip(spec, height, width, frames)
    assert video.shape == (frames, height, width, 3) and video.dtype == np.uint8
    assert truth["center"].shape == (frames, 2) and truth["center"].dtype == np.float32
    color = simple.PALETTE[spec.color]
    pad = int(np.ceil(spec.radius)) + 2
    for t in range(frames):
      mask = np.all(video[t] == color, axis=-1)
      ys, xs = np.nonzero(mask)
      centroid = np.array([xs.mean(), ys.mean()])
      assert np.abs(centroid - truth["center"][t]).max() < 1.0, (spec, t)
      # The same shape on a padded canvas has no pixels outside the frame.
      cx, cy = truth["center"][t]
      full = simple.shape_mask(spec.shape, cx + pad, cy + pad, spec.radius,
                               height + 2 * pad, width + 2 * pad)
      assert full.sum() == mask.sum() > 0
    # The object's extent (radius around the centre) lies within the pixel grid.
    low = truth["center"] - spec.radius
    high = truth["center"] + spec.radius
    assert low.min() >= 0 and (high <= np.array([width - 1, height - 1])).all(), spec
    # Motion is along the named direction and clearly visible.
    displacement = truth["center"][-1] - truth["center"][0]
    along = displacement @ simple.DIRECTION_VECTORS[spec.direction]
    extent = width if simple.DIRECTIONS[spec.direction] in ("left", "right") else height
    assert 0.3 * extent < along <= 0.55 * extent + 1e-4
    np.testing.assert_allclose(np.abs(displacement).sum(), along, atol=1e-4)
    assert 0.12 * min(height, width) <= spec.radius <= 0.2 * min(height, width)


def test_caption_names_every_attribute():
  for spec in _specs("train", 32, 32, 9, 100) + _specs("test", 32, 32, 9, 30):
    text = simple.caption(spec)
    words = text.split()
    assert text == text.lower()
    assert words[:3] == ["a", simple.COLOR_NAMES[spec.color], simple.SHAPES[spec.shape]]
    assert words[-3:] == ["a", simple.COLOR_NAMES[spec.background], "background"]
    assert [w for w in words if w in simple.DIRECTIONS] == [
        simple.DIRECTIONS[spec.direction]]
    assert sorted(w for w in words if w in simple.COLOR_NAMES) == sorted(
        [simple.COLOR_NAMES[spec.color], simple.COLOR_NAMES[spec.background]])
    assert sum(w in simple.SHAPES for w in words) == 1


def test_caption_corpus_covers_phrasings_and_is_deterministic():
  corpus = simple.caption_corpus(0, 40)
  assert corpus == simple.caption_corpus(0, 40)
  assert len(corpus) == 40
  for phrasing in simple.PHRASINGS:
    verb = phrasing.split()[0]
    assert any(f" {verb} " in text for text in corpus), phrasing


@pytest.fixture(scope="module")
def tiny_builder(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  params = dict(height=16, width=16, frames=5, fps=4, num_train=8, num_test=4, seed=0)
  return simple_builder.prepare(data_dir, **params), data_dir, params


def test_builder_prepares_and_reuses(tiny_builder):
  builder, data_dir, params = tiny_builder
  assert builder.is_prepared()
  assert builder.info.splits["train"].num_examples == 8
  assert builder.info.splits["test"].num_examples == 4
  assert builder.info.metadata["fps"] == 4
  again = simple_builder.prepare(data_dir, **params)
  assert again.data_path == builder.data_path
  other = simple_builder.make_builder(data_dir, **{**params, "seed": 1})
  assert other.data_path != builder.data_path and not other.is_prepared()
  with pytest.raises(ValueError, match="height"):
    simple_builder.make_builder(data_dir, **{**params, "height": 0})


def _batches(loader):
  return list(loader)


@pytest.mark.parametrize("split,num", [("train", 8), ("test", 4)])
def test_loader_in_order_equals_generator(tiny_builder, split, num):
  builder, _, params = tiny_builder
  batches = _batches(make_loader(builder, split, batch_size=2, seed=0, shuffle=False,
                                 num_epochs=1))
  assert len(batches) == num // 2
  expected = [e for _, e in simple.generate_examples(
      params["seed"], split, num, params["height"], params["width"], params["frames"])]
  for b, batch in enumerate(batches):
    assert batch["video"].shape == (2, 5, 16, 16, 3) and batch["video"].dtype == np.uint8
    assert batch["center"].shape == (2, 5, 2) and batch["center"].dtype == np.float32
    assert batch["caption"].shape == (2,)
    for j in range(2):
      want = expected[2 * b + j]
      assert isinstance(batch["caption"][j], str)
      assert batch["caption"][j] == want["caption"]
      np.testing.assert_array_equal(batch["video"][j], want["video"])
      np.testing.assert_array_equal(batch["center"][j], want["center"])
      for key in ("radius", "color", "shape", "direction", "background"):
        assert batch[key][j] == want[key], key


def test_shuffled_loader_is_deterministic(tiny_builder):
  builder, _, _ = tiny_builder

  def captions(seed):
    loader = make_loader(builder, "train", batch_size=4, seed=seed, num_epochs=2)
    return [tuple(batch["caption"]) for batch in loader]

  first = captions(7)
  assert len(first) == 4
  assert first == captions(7)
  assert first != captions(8)
  in_order = [tuple(b["caption"]) for b in make_loader(
      builder, "train", batch_size=4, seed=7, shuffle=False, num_epochs=1)]
  # Each epoch is a permutation of the split.
  assert sorted(first[0] + first[1]) == sorted(in_order[0] + in_order[1])
  assert first[:2] != in_order
  with pytest.raises(ValueError, match="split"):
    make_loader(builder, "validation", batch_size=2, seed=0)


def test_wrapped_clips_are_the_unwrapped_shape_modulo_the_frame():
  """A wrapped clip's frame t equals the same shape drawn, without wrapping, on a frame three
  times as large centred on the path, then folded back onto the torus."""
  height, width, frames = 24, 32, 40  # long enough that every object crosses an edge
  crossed = 0
  for i in range(12):
    spec = simple.sample_spec(simple.example_rng(1, "train", i), height, width, 9, "train",
                              wrap=True)
    video, truth = simple.render_clip(spec, height, width, frames)
    for t in (0, frames // 2, frames - 1):
      cx, cy = truth["center"][t] % np.array([width, height])  # the copy in the middle tile
      big = simple.shape_mask(spec.shape, cx + width, cy + height, spec.radius, 3 * height,
                              3 * width)
      folded = big.reshape(3, height, 3, width).any(axis=(0, 2))
      drawn = np.all(video[t] == simple.PALETTE[spec.color], axis=-1)
      np.testing.assert_array_equal(drawn, folded)
    path = truth["center"]
    crossed += bool(np.any((path < 0) | (path >= [width, height])))
    # the unwrapped path moves at the spec's speed along its direction
    np.testing.assert_allclose(np.diff(path, axis=0),
                               np.broadcast_to(spec.speed * simple.DIRECTION_VECTORS[
                                   spec.direction], (frames - 1, 2)), atol=1e-4)
  assert crossed >= 6


def test_wrap_off_leaves_clips_as_they_were():
  for i in range(5):
    a = simple.make_example(0, "train", i, 32, 32, 9)
    b = simple.make_example(0, "train", i, 32, 32, 9, wrap=False)
    assert a["video"].tobytes() == b["video"].tobytes() and a["caption"] == b["caption"]
  assert (simple_builder.config_name(height=32, width=32, frames=9, fps=8, num_train=1,
                                     num_test=1, seed=0)
          == "32x32_t9_fps8_train1_test1_seed0")


def test_long_example_continues_the_test_clip():
  short = simple.make_example(0, "test", 3, 32, 32, 9, wrap=True)
  long = simple.long_example(0, 3, 32, 32, 9, 4)
  assert long["video"].shape == (33, 32, 32, 3) and long["caption"] == short["caption"]
  np.testing.assert_array_equal(long["video"][:9], short["video"])
