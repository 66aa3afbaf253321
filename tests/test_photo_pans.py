"""Natural-image clips (vdm/data/photo_pans.py): camera motion, optics, splits, the builder."""
import numpy as np
import pytest

from vdm.data import assets
from vdm.data import photo_pans


def _still_path(frames, shift):
  return dict(shift=np.asarray(shift, np.float64), zoom=np.ones(frames), roll=np.zeros(frames))


def test_pan_by_whole_pixels_moves_the_frame_content_exactly():
  photo = assets.photo("astronaut")
  path = _still_path(2, [[0.0, 0.0], [3.0, -2.0]])
  frames = photo_pans.render(photo, 32, 32, scale=2.0, center=np.array([256.0, 256.0]),
                             path=path, blur=0.5)
  # The camera moved +3 px right and -2 px up: frame 1 at (y, x) sees frame 0 at (y-2, x+3).
  np.testing.assert_allclose(frames[1, 2:, :-3], frames[0, :-2, 3:], atol=1e-3)
  assert np.abs(frames[1] - frames[0]).mean() > 1.0  # and it did move


def test_optics_blur_band_limits_the_frames():
  photo = assets.photo("gravel")  # fine texture: aliases when sampled without a prefilter
  path = _still_path(1, [[0.0, 0.0]])
  center = np.array([256.0, 256.0])

  def nyquist_energy(frame):
    spectrum = np.abs(np.fft.fft2(frame[..., 0] - frame[..., 0].mean()))
    return spectrum[16, :].sum() + spectrum[:, 16].sum()

  soft = photo_pans.render(photo, 32, 32, scale=4.0, center=center, path=path, blur=0.6)[0]
  sharp = photo_pans.render(photo, 32, 32, scale=4.0, center=center, path=path, blur=0.0)[0]
  naive = photo[256 - 64:256 + 64:4, 256 - 64:256 + 64:4].astype(np.float32)  # no prefilter
  assert nyquist_energy(soft) < 0.5 * nyquist_energy(sharp) < 0.5 * nyquist_energy(naive)


def test_clips_are_deterministic_and_stay_inside_the_photo():
  a = photo_pans.make_example(3, "train", 5, height=24, width=40, frames=6)
  b = photo_pans.make_example(3, "train", 5, height=24, width=40, frames=6)
  assert a["video"].shape == (6, 24, 40, 3) and a["video"].dtype == np.uint8
  np.testing.assert_array_equal(a["video"], b["video"])
  assert not np.array_equal(a["video"], photo_pans.make_example(3, "train", 6, height=24,
                                                                width=40, frames=6)["video"])
  assert a["scale"] >= 1.0
  # The widest reach of the path (in photo pixels) fits in the photo around the chosen view.
  photo = assets.photo(photo_pans.PHOTOS["train"][int(a["photo"])])
  reach = a["scale"] * photo_pans.view_extent(dict(shift=a["shift"], zoom=a["zoom"]), 24, 40)
  assert reach <= 0.5 * min(photo.shape[:2]) + 1e-3


def test_test_photos_are_unseen_in_training():
  assert not set(photo_pans.PHOTOS["train"]) & set(photo_pans.PHOTOS["test"])
  for i in range(6):
    example = photo_pans.make_example(0, "test", i, height=16, width=16, frames=2)
    assert 0 <= int(example["photo"]) < len(photo_pans.PHOTOS["test"])
  with pytest.raises(ValueError, match="split"):
    photo_pans.make_example(0, "val", 0)


def test_builder_through_from_config(tmp_path):
  import ml_collections

  from vdm.data.loader import make_loader
  from vdm.data.kinds import build as from_config
  data = ml_collections.ConfigDict(dict(kind="photo_pans", aspect="16:9", short_side=16,
                                        frames=3, fps=8, num_train=4, num_test=2, seed=0))
  builder = from_config(data, str(tmp_path))
  batch = next(iter(make_loader(builder, "train", batch_size=2, seed=0)))
  assert batch["video"].shape == (2, 3, 16, 32, 3)
  first = builder.as_data_source()["train"][0]
  np.testing.assert_array_equal(
      first["video"], photo_pans.make_example(0, "train", 0, height=16, width=32,
                                              frames=3)["video"])
