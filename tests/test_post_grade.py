"""Grading and .cube LUTs against reference numpy computations."""
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from vdm.post.grade import grade
from vdm.post.lut import Lut, apply_lut, identity_table, read_cube, write_cube


def _frames(seed=0, shape=(3, 12, 16, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _film_table(n):
  """A non-linear 'film' look sampled on the grid: a colour matrix, then an S-curve."""
  g = identity_table(n).astype(np.float64)
  m = np.array([[0.9, 0.15, -0.05], [0.05, 0.85, 0.1], [-0.05, 0.2, 0.85]])
  y = np.clip(g @ m.T, 0, 1)
  return (3 * y**2 - 2 * y**3).astype(np.float32)


def _tetra_reference(rgb, table):
  """Textbook tetrahedral interpolation, one pixel at a time with its six explicit cases."""
  n = table.shape[0]
  out = np.empty_like(rgb)
  for i, c in enumerate(rgb):
    p = np.clip(c, 0, 1) * (n - 1)
    b = np.minimum(np.floor(p), n - 2).astype(int)
    fr, fg, fb = p - b
    v = lambda dr, dg, db: table[b[0] + dr, b[1] + dg, b[2] + db].astype(np.float64)
    if fr >= fg >= fb:
      o = (1 - fr) * v(0, 0, 0) + (fr - fg) * v(1, 0, 0) + (fg - fb) * v(1, 1, 0) + fb * v(1, 1, 1)
    elif fr >= fb >= fg:
      o = (1 - fr) * v(0, 0, 0) + (fr - fb) * v(1, 0, 0) + (fb - fg) * v(1, 0, 1) + fg * v(1, 1, 1)
    elif fb >= fr >= fg:
      o = (1 - fb) * v(0, 0, 0) + (fb - fr) * v(0, 0, 1) + (fr - fg) * v(1, 0, 1) + fg * v(1, 1, 1)
    elif fb >= fg >= fr:
      o = (1 - fb) * v(0, 0, 0) + (fb - fg) * v(0, 0, 1) + (fg - fr) * v(0, 1, 1) + fr * v(1, 1, 1)
    elif fg >= fb >= fr:
      o = (1 - fg) * v(0, 0, 0) + (fg - fb) * v(0, 1, 0) + (fb - fr) * v(0, 1, 1) + fr * v(1, 1, 1)
    else:
      o = (1 - fg) * v(0, 0, 0) + (fg - fr) * v(0, 1, 0) + (fr - fb) * v(1, 1, 0) + fb * v(1, 1, 1)
    out[i] = o
  return out


@pytest.mark.parametrize("size", [17, 33, 65])
@pytest.mark.parametrize("interp", ["trilinear", "tetrahedral"])
def test_identity_cube_is_a_no_op(tmp_path, size, interp):
  path = str(tmp_path / "id.cube")
  write_cube(path, identity_table(size), title="identity")
  frames = _frames()
  out = grade(frames, lut=path, lut_interp=interp)
  assert out.dtype == np.uint8 and np.abs(out.astype(int) - frames).max() <= 1


def test_cube_round_trip_and_file_layout(tmp_path):
  table = _film_table(17)
  path = str(tmp_path / "film.cube")
  write_cube(path, table, title="film")
  lut = read_cube(path)
  assert lut.size == 17 and lut.title == "film"
  np.testing.assert_allclose(lut.table, table, atol=1e-6)
  # The .cube convention: red varies fastest. Line 2 of the data is (r=1, g=0, b=0).
  data = [l for l in open(path).read().splitlines() if l[:1].isdigit() or l[:1] == "-"]
  np.testing.assert_allclose([float(v) for v in data[1].split()], table[1, 0, 0], atol=1e-6)


def test_known_lut_matches_reference():
  n = 17
  table = _film_table(n)
  rgb = np.random.default_rng(1).random((300, 3)).astype(np.float32)
  rgb[:4] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0.25]]  # corners and grey axis
  grid = np.linspace(0, 1, n)
  tri_ref = RegularGridInterpolator((grid, grid, grid), table.astype(np.float64))(rgb)
  tri = np.asarray(apply_lut(rgb, table, np.zeros(3), np.ones(3), "trilinear"))
  np.testing.assert_allclose(tri, tri_ref, atol=2e-6)
  tet = np.asarray(apply_lut(rgb, table, np.zeros(3), np.ones(3), "tetrahedral"))
  np.testing.assert_allclose(tet, _tetra_reference(rgb.astype(np.float64), table), atol=2e-6)
  # Through grade() on uint8 frames: within one level of the reference.
  frames = (rgb.reshape(1, 15, 20, 3) * 255).round().astype(np.uint8)
  x = frames.reshape(-1, 3) / 255.0
  ref = RegularGridInterpolator((grid, grid, grid), table.astype(np.float64))(x)
  out = grade(frames, lut=Lut(table))
  assert np.abs(out.reshape(-1, 3).astype(int) - np.round(ref * 255)).max() <= 1


def test_domain_and_out_of_range_values_stay_in_range(tmp_path):
  table = identity_table(17) * 1.5 - 0.25  # LUT output outside [0, 1]
  lut = Lut(table, domain_min=np.full(3, 0.0, np.float32), domain_max=np.full(3, 2.0, np.float32))
  write_cube(str(tmp_path / "d.cube"), lut)
  back = read_cube(str(tmp_path / "d.cube"))
  np.testing.assert_allclose(back.domain_max, 2.0)
  x = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
  out = grade(x, lut=back)
  assert out.min() >= 0 and out.max() <= 1
  # Domain [0, 2]: input v sits at v / 2 of the table, whose value is 1.5 v / 2 - 0.25.
  np.testing.assert_allclose(out, np.clip(0.75 * x - 0.25, 0, 1), atol=1e-5)


def test_basic_operations_against_closed_forms():
  x = np.random.default_rng(3).random((2, 6, 6, 3)).astype(np.float32) * 0.4 + 0.3
  np.testing.assert_allclose(grade(x, gamma=2.0), np.sqrt(x), atol=1e-5)
  np.testing.assert_allclose(grade(x, contrast=1.5), np.clip((x - 0.5) * 1.5 + 0.5, 0, 1), atol=1e-5)
  luma = (x * [0.2126, 0.7152, 0.0722]).sum(-1, keepdims=True)
  np.testing.assert_allclose(grade(x, saturation=0.0), np.broadcast_to(luma, x.shape), atol=1e-5)
  # One stop up doubles linear light.
  lin = lambda v: np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
  np.testing.assert_allclose(lin(grade(x * 0.5, exposure=1.0)), np.clip(2 * lin(x * 0.5), 0, 1),
                             atol=1e-4)
  warm = grade(x, temperature=0.5)
  assert (warm[..., 0] >= x[..., 0] - 1e-6).all() and (warm[..., 2] <= x[..., 2] + 1e-6).all()
  extreme = grade(_frames(), exposure=8, contrast=4, saturation=4)
  assert extreme.dtype == np.uint8


@pytest.mark.parametrize("kwargs, field", [(dict(exposure=9), "exposure"),
                                           (dict(gamma=0), "gamma"),
                                           (dict(saturation="a"), "saturation"),
                                           (dict(lut_interp="cubic"), "lut_interp"),
                                           (dict(lut_strength=2), "lut_strength")])
def test_bad_arguments(kwargs, field):
  with pytest.raises(ValueError, match=f"grade: {field}"):
    grade(_frames(), **kwargs)


def test_bad_cube_files(tmp_path):
  p = tmp_path / "bad.cube"
  p.write_text("LUT_3D_SIZE 2\n0 0 0\n1 0 0\n")
  with pytest.raises(ValueError, match="needs 8 data lines, found 2"):
    read_cube(str(p))
  p.write_text("LUT_3D_SIZE 2\n0 0 zero\n")
  with pytest.raises(ValueError, match="bad.cube:2"):
    read_cube(str(p))
  p.write_text("LUT_1D_SIZE 1024\n")
  with pytest.raises(ValueError, match="1D LUTs"):
    read_cube(str(p))
  with pytest.raises(FileNotFoundError, match="missing.cube"):
    grade(_frames(), lut=str(tmp_path / "missing.cube"))
