"""The synthetic benchmark (vdm.data.scenes, captions, moving_mnist), its builders and loader."""
import itertools

import grain
import numpy as np
import pytest

from vdm.data import assets
from vdm.data import captions
from vdm.data import kinds
from vdm.data import moving_mnist
from vdm.data import scene_examples
from vdm.data import scenes
from vdm.data import scenes_builder
from vdm.data.loader import make_loader


def _scene(seed, split, index, height=32, width=32, frames=6, **kw):
  return scenes.sample_scene(scenes.example_rng(seed, split, index), height, width, frames,
                             split, **kw)


def _expected_pixels(scene, truth):
  """Re-renders a clip from its recorded ground truth alone."""
  video = scenes.render_background(scene, truth["camera"].astype(np.float64))
  seg = np.zeros(video.shape[:3], np.uint8)
  masks = np.zeros((scene.frames, scenes.MAX_OBJECTS) + video.shape[1:3], bool)
  for k in np.nonzero(truth["present"])[0]:
    for t in range(scene.frames):
      m = scenes.object_mask(truth["shape"][k], truth["center"][t, k], truth["radius"][t, k],
                             truth["angle"][t, k], scene.height, scene.width,
                             truth["digit"][k])
      masks[t, k] = m
      video[t][m] = scenes.PALETTE[truth["color"][k]]
      seg[t][m] = truth["draw_order"][k] + 1
  return video, seg, masks


CASES = [("train", 32, 32, 6), ("test", 24, 40, 5), ("long", 32, 24, 3), ("train", 48, 27, 4)]


@pytest.mark.parametrize("split,height,width,frames", CASES)
def test_truth_matches_pixels(split, height, width, frames):
  for i in range(6):
    scene = _scene(1, split, i, height, width, frames)
    video, truth = scenes.render_scene(scene)
    T = frames
    assert video.shape == (T, height, width, 3) and video.dtype == np.uint8
    want_video, want_seg, masks = _expected_pixels(scene, truth)
    np.testing.assert_array_equal(video, want_video)
    np.testing.assert_array_equal(truth["segmentation"], want_seg)
    for k in range(scenes.MAX_OBJECTS):
      np.testing.assert_array_equal(truth["visible"][:, k],
                                    (truth["segmentation"] == k + 1).any(axis=(1, 2)))
      if not truth["present"][k]:
        assert truth["color"][k] == -1 and not truth["visible"][:, k].any()
        continue
      for t in range(T):
        ys, xs = np.nonzero(masks[t, k])
        assert len(xs), "objects never leave the frame"
        np.testing.assert_array_equal(truth["box"][t, k], [xs.min(), ys.min(), xs.max(),
                                                           ys.max()])
        # Fully inside: the same mask on a padded canvas has no extra pixels.
        pad = int(np.ceil(2 * truth["radius"][t, k])) + 2
        c = truth["center"][t, k] + pad
        full = scenes.object_mask(truth["shape"][k], c, truth["radius"][t, k],
                                  truth["angle"][t, k], height + 2 * pad, width + 2 * pad,
                                  truth["digit"][k])
        assert full.sum() == masks[t, k].sum()
        if scenes.SHAPES[truth["shape"][k]] in ("circle", "square", "ring"):
          np.testing.assert_allclose([xs.mean(), ys.mean()], truth["center"][t, k], atol=1.0)


def test_object_mask_geometry():
  r = 20.0
  area = {name: scenes.object_mask(i, (50.0, 50.0), r, 0.0, 101, 101).sum()
          for i, name in enumerate(scenes.SHAPES[:-1])}
  np.testing.assert_allclose(area["circle"], np.pi * r * r, rtol=0.02)
  np.testing.assert_allclose(area["square"], 4 * r * r, rtol=0.06)
  np.testing.assert_allclose(area["ring"], np.pi * r * r * (1 - 0.55**2), rtol=0.04)
  np.testing.assert_allclose(area["triangle"], 3 * np.sqrt(3) / 4 * r * r, rtol=0.06)
  # A quarter turn maps the square onto itself; the star has 5-fold symmetry.
  sq = scenes.SHAPES.index("square")
  np.testing.assert_array_equal(scenes.object_mask(sq, (50., 50.), r, np.pi / 2, 101, 101),
                                scenes.object_mask(sq, (50., 50.), r, 0.0, 101, 101))
  star = scenes.SHAPES.index("star")
  a = scenes.object_mask(star, (50., 50.), r, 0.0, 101, 101)
  b = scenes.object_mask(star, (50., 50.), r, 2 * np.pi / 5, 101, 101)
  assert (a != b).sum() < 0.03 * a.sum()


def test_motion_matches_its_name():
  for i in range(60):
    scene = _scene(2, "train", i, 48, 48, 8, cameras=("static",))
    _, truth = scenes.render_scene(scene)
    for k, obj in enumerate(scene.objects):
      name = scenes.MOTIONS[obj.motion]
      c, r, a = truth["center"][:, k], truth["radius"][:, k], truth["angle"][:, k]
      step = np.diff(c, axis=0)
      if name in scenes.MOTION_VECTORS:
        want = np.asarray(scenes.MOTION_VECTORS[name], np.float32)
        np.testing.assert_array_equal(np.sign(np.round(step, 4)),
                                      np.broadcast_to(want, step.shape))
      elif name in ("grow", "shrink"):
        assert (np.diff(r) > 0).all() == (name == "grow") and np.ptp(c, 0).max() < 1e-3
      elif name == "rotate":
        assert np.abs(np.diff(a)).min() > 0.05 and np.ptp(c, 0).max() < 1e-3
      elif name == "circle":
        ox, oy, rad = obj.orbit[:3]
        np.testing.assert_allclose(np.hypot(c[:, 0] - ox, c[:, 1] - oy), rad, atol=1e-3)
      if obj.speed == 1 and name != "still":
        assert np.abs(step).sum() + np.abs(np.diff(r)).sum() + np.abs(np.diff(a)).sum() > 0


def test_camera_moves_the_background():
  for camera, sign in (("pan-left", (1, 0)), ("pan-down", (0, -1))):
    scene = _scene(3, "train", 0, 32, 32, 5, cameras=(camera,))
    cam = scenes.camera_transforms(scene)
    np.testing.assert_array_equal(np.sign(np.diff(cam[:, 1:], axis=0)),
                                  np.broadcast_to(sign, (4, 2)))
  zoom = scenes.camera_transforms(_scene(3, "train", 1, 32, 32, 5, cameras=("zoom-in",)))
  assert (np.diff(zoom[:, 0]) > 0).all() and zoom[0, 0] == 1.0
  # The frame centre is the zoom's fixed point.
  np.testing.assert_allclose(zoom[:, 0] * 15.5 + zoom[:, 1], 15.5)


def test_flow_carries_each_pixel_to_the_same_surface_point():
  for i in range(8):
    scene = _scene(4, "train", i, 40, 40, 4)
    video, truth = scenes.render_scene(scene)
    flow = scenes.optical_flow(truth)
    assert flow.shape == (3, 40, 40, 2)
    seg = truth["segmentation"]
    ys, xs = np.mgrid[0:40, 0:40]
    for t in range(3):
      # Background: camera-only motion, so flow is the same similarity map everywhere.
      (s0, tx0, ty0), (s1, tx1, ty1) = truth["camera"][t], truth["camera"][t + 1]
      bg = seg[t] == 0
      np.testing.assert_allclose(flow[t][bg][:, 0], (s1 / s0 * (xs - tx0) + tx1 - xs)[bg],
                                 atol=1e-3)
      for k in np.nonzero(truth["present"])[0]:
        m = seg[t] == k + 1
        if not m.any():
          continue
        # The object-frame coordinate of each pixel is the same after following the flow.
        def local(px, py, tt):
          dx, dy = px - truth["center"][tt, k, 0], py - truth["center"][tt, k, 1]
          c, s = np.cos(truth["angle"][tt, k]), np.sin(truth["angle"][tt, k])
          return np.stack([c * dx + s * dy, -s * dx + c * dy]) / truth["radius"][tt, k]
        before = local(xs[m], ys[m], t)
        after = local(xs[m] + flow[t][m][:, 0], ys[m] + flow[t][m][:, 1], t + 1)
        np.testing.assert_allclose(before, after, atol=1e-3)
        # So the followed (sub-pixel) points lie inside the shape in the next frame.
        assert scenes.unit_shape_mask(truth["shape"][k], after[0], after[1],
                                      truth["digit"][k]).all()


def _compositions(split, num, frames=4):
  out = []
  for i in range(num):
    scene = _scene(0, split, i, 32, 32, frames)
    out.append([(o.color, o.shape, o.motion) for o in scene.objects])
  return out


def test_held_out_compositions_never_in_train():
  for objs in _compositions("train", 300) + _compositions("long", 60):
    assert not any(scenes.is_held_out(*o) for o in objs)
    assert len({o[0] for o in objs}) == len(objs)  # distinct colours per clip
  for objs in _compositions("test", 80):
    assert scenes.is_held_out(*objs[0])
  valid = [k for k in itertools.product(range(len(scenes.COLORS)), range(len(scenes.SHAPES)),
                                        range(len(scenes.MOTIONS))) if scenes.is_valid(k[1], k[2])]
  held = [k for k in valid if scenes.is_held_out(*k)]
  assert 0.1 < len(held) / len(valid) < 0.2
  assert len(scenes.held_out_compositions()) == len(held)
  train = [k for k in valid if not scenes.is_held_out(*k)]
  for axis, size in enumerate([len(scenes.COLORS), len(scenes.SHAPES), len(scenes.MOTIONS)]):
    assert {k[axis] for k in train} == set(range(size))


def test_long_split():
  for i in range(5):
    e = scene_examples.make_example(0, "long", i, 24, 24, 4, long_factor=6)
    assert e["video"].shape == (24, 24, 24, 3)
    assert (e["camera"] == [1, 0, 0]).all()
    assert all(scenes.MOTIONS[m] in scenes.LONG_MOTIONS for m in e["motion"][e["present"]])
    assert e["visible"][:, e["present"]].mean() > 0.5


def test_same_seed_same_bytes():
  a = list(scene_examples.generate_examples(5, "train", 3, 24, 32, 4))
  b = list(scene_examples.generate_examples(5, "train", 3, 24, 32, 4))
  c = list(scene_examples.generate_examples(6, "train", 3, 24, 32, 4))
  for (_, x), (_, y) in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      assert np.asarray(x[key]).tobytes() == np.asarray(y[key]).tobytes(), key
  assert [x["video"].tobytes() for _, x in a] != [x["video"].tobytes() for _, x in c]
  # Example i depends only on (seed, split, i).
  assert scene_examples.make_example(5, "train", 2, 24, 32, 4)["caption"] == a[2][1]["caption"]


def test_captions_name_every_object_speed_environment_and_camera():
  for i in range(80):
    scene = _scene(7, "train", i, 32, 32, 4)
    short, long = captions.short_caption(scene), captions.long_caption(scene)
    for text in (short, long.lower()):
      for obj in scene.objects:
        assert captions.subject(obj) in text
        if scenes.MOTIONS[obj.motion] != "still":
          assert captions.SPEED_WORDS[obj.speed] in text
      if scenes.BACKGROUNDS[scene.background] == "texture":
        assert assets.TEXTURES[scene.texture][1] in text
      else:
        assert scenes.COLOR_NAMES[scene.bg_colors[0]] in text
      cam = captions.camera(scene)
      assert (cam in text) if cam else ("pans" not in text and "zooms" not in text)
    if len(scene.objects) > 1:
      assert " while " in short and " while " in long
    assert len(long) > len(short)
  assert captions.caption_corpus(0, 10) == captions.caption_corpus(0, 10)


def test_moving_mnist_classic_setting():
  e = moving_mnist.make_example(0, "train", 0)
  assert e["video"].shape == (20, 64, 64, 3) and len(e["digit"]) == 2
  images, labels = assets.mnist_digits()
  grey = moving_mnist.render(images[e["digit"]], e["corner"], 64)
  np.testing.assert_array_equal(e["video"][..., 0], grey)
  assert e["corner"].min() >= 0 and e["corner"].max() <= 36
  np.testing.assert_array_equal(labels[e["digit"]], e["digit_label"])
  steps = np.abs(np.diff(e["corner"], axis=0)).sum(-1)
  assert np.median(steps) >= 3  # ~3.6 px/frame, as the classic generator
  test_digits = set(assets.digit_indices("test"))
  for i in range(5):
    assert set(moving_mnist.make_example(0, "test", i)["digit"]) <= test_digits
    assert not set(moving_mnist.make_example(0, "train", i)["digit"]) & test_digits
  assert (moving_mnist.make_example(0, "train", 3)["video"].tobytes()
          == moving_mnist.make_example(0, "train", 3)["video"].tobytes())


@pytest.fixture(scope="module")
def scene_builder(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return scenes_builder.prepare(scenes_builder.make_scenes_builder(
      data_dir, height=16, width=24, frames=4, num_train=12, num_test=4, num_long=2,
      long_factor=2))


def test_scene_builder_matches_generator(scene_builder):
  sources = scene_builder.as_data_source()
  assert {k: len(v) for k, v in sources.items()} == {"train": 12, "test": 4, "long": 2}
  long = next(make_loader(scene_builder, "long", batch_size=2, seed=0, shuffle=False,
                          num_epochs=1).__iter__())
  assert long["video"].shape == (2, 8, 16, 24, 3) and long["visible"].dtype == bool
  want = scene_examples.make_example(0, "long", 1, 16, 24, 4, long_factor=2)
  np.testing.assert_array_equal(long["video"][1], want["video"])
  assert long["caption_long"][1] == want["caption_long"]
  # The stored datasets themselves: no held-out composition in train/long, test leads with one.
  for split in ("train", "long", "test"):
    for record in sources[split]:
      held = [scenes.is_held_out(c, s, m) for c, s, m, p in zip(
          record["color"], record["shape"], record["motion"], record["present"]) if p]
      assert held and (held[0] if split == "test" else not any(held))
  with pytest.raises(ValueError, match="kind"):
    import ml_collections
    kinds.build(ml_collections.ConfigDict(dict(kind="nope")), "")


def test_loader_shards_by_process(scene_builder):
  seen = []
  for index in range(2):
    loader = make_loader(
        scene_builder, "train", batch_size=2, seed=1, num_epochs=1,
        shard_options=grain.sharding.ShardOptions(shard_index=index, shard_count=2))
    seen.append([c for batch in loader for c in batch["caption"]])
  assert len(seen[0]) == len(seen[1]) == 6
  everything = [r["caption"].decode() for r in scene_builder.as_data_source()["train"]]
  assert sorted(seen[0] + seen[1]) == sorted(everything)


def test_resumed_loader_yields_the_same_next_batches(scene_builder):
  def loader():
    return make_loader(scene_builder, "train", batch_size=3, seed=4)
  uninterrupted = iter(loader())
  reference = [next(uninterrupted)["caption"].tolist() for _ in range(9)]  # spans 2+ epochs
  first = iter(loader())
  for _ in range(5):
    next(first)
  state = first.get_state()
  del first
  resumed = iter(loader())
  resumed.set_state(state)
  assert [next(resumed)["caption"].tolist() for _ in range(4)] == reference[5:]


def test_bucketed_loader_static_shapes_and_resume(scene_builder):
  from vdm.data import buckets
  # 'train' and 'long' differ in frame count: two buckets.
  make = lambda: buckets.make_bucketed_dataset(scene_builder, ["train", "long"], batch_size=2,
                                               seed=3, shard_index=0, shard_count=1)
  it = iter(make())
  reference = [next(it) for _ in range(12)]
  assert {b["video"].shape for b in reference} == {(2, 4, 16, 24, 3), (2, 8, 16, 24, 3)}
  it = iter(make())
  for _ in range(7):
    next(it)
  state = it.get_state()
  resumed = iter(make())
  resumed.set_state(state)
  for want in reference[7:]:
    got = next(resumed)
    assert got["caption"].tolist() == want["caption"].tolist()
    assert got["video"].tobytes() == want["video"].tobytes()
  halves = [buckets.make_bucketed_dataset(scene_builder, ["train"], batch_size=2, seed=3,
                                          shard_index=i, shard_count=2) for i in range(2)]
  firsts = [set(c for _ in range(3) for c in next(h)["caption"]) for h in map(iter, halves)]
  assert not firsts[0] & firsts[1]


def test_loader_state_round_trips_through_orbax(scene_builder, tmp_path):
  import orbax.checkpoint as ocp
  loader = make_loader(scene_builder, "train", batch_size=3, seed=9)
  it = iter(loader)
  for _ in range(3):
    next(it)
  with ocp.CheckpointManager(str(tmp_path / "ckpt")) as manager:
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
  want = [next(it)["caption"].tolist() for _ in range(3)]
  fresh = iter(make_loader(scene_builder, "train", batch_size=3, seed=9))
  with ocp.CheckpointManager(str(tmp_path / "ckpt")) as manager:
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  assert [next(fresh)["caption"].tolist() for _ in range(3)] == want


def test_tokenizer_trained_from_dataset_captions_is_stored_with_it(scene_builder):
  from vdm.data import dataset_tokenizer
  from vdm.text import tokenizer as text_tokenizer
  texts = dataset_tokenizer.train_captions(scene_builder)
  stored = [r["caption"].decode() for r in scene_builder.as_data_source()["train"]]
  assert texts[0::2] == stored  # recomputed captions equal the stored ones
  path = dataset_tokenizer.prepare_tokenizer(scene_builder, vocab_size=128)
  assert path.startswith(str(scene_builder.data_path))
  tok = text_tokenizer.Tokenizer.load(path)
  ids, mask = tok.encode(stored[:2], max_length=48)
  assert (ids[mask] != text_tokenizer.UNK_ID).all()
