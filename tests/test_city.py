"""Scene geometry helpers and the procedural city renderer."""

import dataclasses
import time

import numpy as np
import pytest

from mclnf_jax.data import city
from mclnf_jax.data import city_block
from mclnf_jax.data import scene as scene_lib
from mclnf_jax.errors import UserError


def _nadir_c2w(x: float, y: float, z: float) -> np.ndarray:
  """A camera at (x, y, z) looking straight down (image up = world +y)."""
  c2w = np.eye(4, dtype=np.float32)
  c2w[:3, 3] = (x, y, z)
  return c2w[None]


def _one_box_block(**overrides) -> city_block.Block:
  block = city_block.make_block(0)
  one = dict(box_min=np.array([[-0.2, -0.2, 0.0]]), box_max=np.array([[0.2, 0.2, 0.5]]),
             facade=block.facade[:1], roof=block.roof[:1], window=block.window[:1],
             window_period=np.array([[0.1, 0.1]]), window_fill=np.array([[0.5, 0.5]]),
             streets=np.zeros((0, 3)))
  one.update(overrides)
  return dataclasses.replace(block, **one)


@pytest.fixture(scope='module')
def dataset():
  return city.make_city_dataset(num_blocks=10, seed=0, height=16, width=16,
                                views_per_cell=4, heldout_views_per_cell=2)


# ---------------------------------------------------------------- scene helpers


def test_camera_rays_axes_and_pixel_centres():
  c2w = _nadir_c2w(1.0, 2.0, 3.0)
  origins, dirs = scene_lib.camera_rays(c2w, 5, 7, 10.0, 10.0, 3.5, 2.5)
  assert origins.shape == dirs.shape == (1, 5, 7, 3)
  np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(origins[0, 0, 0], [1.0, 2.0, 3.0])
  np.testing.assert_allclose(dirs[0, 2, 3], [0.0, 0.0, -1.0], atol=1e-7)  # centre pixel
  top_left = dirs[0, 0, 0] / -dirs[0, 0, 0, 2]
  np.testing.assert_allclose(top_left, [-0.3, 0.2, -1.0], rtol=1e-5)   # (0.5-3.5)/10


def test_cell_of_points_is_row_major_and_clamps():
  bounds = (0.0, 2.0, 0.0, 2.0)
  xy = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [-5, -5], [9, 0.1],
                 [2.0, 2.0]])
  np.testing.assert_array_equal(scene_lib.cell_of_points(xy, bounds), [0, 1, 2, 3, 0,
                                                                       1, 3])
  assert scene_lib.cell_of_points(np.array([0.1, 1.9]), bounds, (2, 3)) == 3


def test_views_by_cell_uses_optical_axis_hit():
  # Camera above cell 0 but tilted so its axis hits the ground over cell 3.
  c2w = np.concatenate([_nadir_c2w(-0.5, -0.5, 1.0), _nadir_c2w(0.5, 0.5, 1.0)])
  forward = np.array([[1.0, 1.0, -1.0]]) / np.sqrt(3)
  c2w[0] = city._look_c2w(np.array([[-0.5, -0.5, 1.0]]), forward, np.array([np.pi / 4]))[0]
  s = scene_lib.Scene(images=np.zeros((2, 2, 2, 3), np.float32), c2w=c2w,
                      focal=(1.0, 1.0), principal=(1.0, 1.0), near=0.1, far=5.0,
                      bounds=(-1.0, 1.0, -1.0, 1.0)).validate()
  groups = scene_lib.views_by_cell(s)
  assert [g.tolist() for g in groups] == [[], [], [], [0, 1]]
  by_camera_xy = scene_lib.views_by_cell(dataclasses.replace(s, ground_z=None))
  assert [g.tolist() for g in by_camera_xy] == [[0], [], [], [1]]
  with pytest.raises(UserError, match=r"cell 0 .*no views") as err:
    scene_lib.views_by_cell(s, require_all=True)
  assert "'scene'" not in str(err.value).split(':')[0] and '\n' not in str(err.value)


def test_own_cell_fraction_counts_surface_pixels_over_the_views_cell():
  # A nadir camera on the border x = 0 (its xy places it in cell 1) sees the ground 2
  # below: half its pixel columns lie over cell 0, half over cell 1.
  c2w = _nadir_c2w(0.0, -0.5, 2.0)
  s = scene_lib.Scene(images=np.zeros((1, 4, 4, 3), np.float32), c2w=c2w,
                      focal=(8.0, 8.0), principal=(2.0, 2.0), near=0.1, far=5.0,
                      bounds=(-1.0, 1.0, -1.0, 1.0), depth=np.zeros((1, 4, 4), np.float32),
                      ground_z=None)
  _, dirs = scene_lib.camera_rays(c2w, 4, 4, 8.0, 8.0, 2.0, 2.0)   # footprint +-0.375
  depth = (2.0 / -dirs[..., 2]).astype(np.float32)           # to the ground z = 0
  shares = scene_lib.own_cell_fraction(dataclasses.replace(s, depth=depth))
  np.testing.assert_allclose(shares, [0.0, 0.5, 0.0, 0.0])
  depth[0, :, :2] = 5.0                                      # the cell-0 half sees sky
  shares = scene_lib.own_cell_fraction(dataclasses.replace(s, depth=depth))
  np.testing.assert_allclose(shares, [0.0, 1.0, 0.0, 0.0])
  with pytest.raises(UserError, match='depth') as err:
    scene_lib.own_cell_fraction(dataclasses.replace(s, depth=None))
  assert '\n' not in str(err.value)


def test_city_cells_are_half_their_own(dataset):
  """The embedded city's aerial views see their neighbours: 40-60% own cell."""
  train, test, _ = dataset
  shares = np.concatenate([scene_lib.own_cell_fraction(s) for s in train + test])
  assert 0.4 < shares.mean() < 0.6 and shares.max() < 0.75


@pytest.mark.parametrize('change, field', [
    (dict(c2w=np.zeros((2, 4, 4), np.float32)), 'c2w'),
    (dict(images=np.zeros((1, 2, 2, 4), np.float32)), 'images'),
    (dict(depth=np.zeros((1, 3, 3), np.float32)), 'depth'),
    (dict(images=np.full((1, 2, 2, 3), np.nan, np.float32)), 'images'),
    (dict(c2w=np.diag([2.0, 1.0, 1.0, 1.0])[None].astype(np.float32)), 'c2w'),
    (dict(near=5.0), 'near/far'),
    (dict(bounds=(1.0, 0.0, 0.0, 1.0)), 'bounds'),
])
def test_validate_names_the_bad_field(change, field):
  good = scene_lib.Scene(images=np.zeros((1, 2, 2, 3), np.float32),
                         c2w=_nadir_c2w(0, 0, 1), focal=(1.0, 1.0),
                         principal=(1.0, 1.0), near=0.1, far=2.0,
                         bounds=(0.0, 1.0, 0.0, 1.0), name='my_scene')
  good.validate()
  with pytest.raises(UserError) as err:
    dataclasses.replace(good, **change).validate()
  assert str(err.value).startswith(f"my_scene: field '{field}'")
  assert '\n' not in str(err.value)


def test_rotation_check_tolerance():
  c2w = _nadir_c2w(0, 0, 1).copy()
  c2w[0, 0, 0] = 1.0 + 4e-4          # |R R^T - I| ~ 8e-4 < 1e-3
  scene_lib.check_rotations(c2w, 'src', 'c2w')
  c2w[0, 0, 0] = 1.0 + 1e-3
  with pytest.raises(UserError, match='not orthonormal'):
    scene_lib.check_rotations(c2w, 'src', 'c2w')


def test_scene_npz_cache_roundtrip(tmp_path):
  s = scene_lib.Scene(images=np.random.rand(2, 3, 4, 3).astype(np.float32),
                      c2w=np.repeat(_nadir_c2w(0, 0, 1), 2, 0), focal=(2.0, 3.0),
                      principal=(2.0, 1.5), near=0.1, far=2.0, bounds=(0., 1., 0., 1.),
                      depth=np.ones((2, 3, 4), np.float32), ground_z=None, name='x')
  path = str(tmp_path / 'c' / 'scene.npz')
  scene_lib.save_scene_npz(s, path, key='k1')
  back = scene_lib.load_scene_npz(path, key='k1')
  np.testing.assert_array_equal(back.images, s.images)
  np.testing.assert_array_equal(back.depth, s.depth)
  assert (back.focal, back.principal, back.bounds, back.ground_z, back.name) == (
      s.focal, s.principal, s.bounds, None, 'x')
  assert scene_lib.load_scene_npz(path, key='other') is None
  assert [p.name for p in (tmp_path / 'c').iterdir()] == ['scene.npz']   # no temp left


# ---------------------------------------------------------------- city


def test_make_block_is_deterministic_per_seed():
  a, b, c = city_block.make_block(5), city_block.make_block(5), city_block.make_block(6)
  np.testing.assert_array_equal(a.box_min, b.box_min)
  np.testing.assert_array_equal(a.facade, b.facade)
  assert a.box_min.shape != c.box_min.shape or not np.allclose(a.box_min, c.box_min)
  assert len(a.box_min) == 12 and np.all(a.box_max > a.box_min)
  half = a.size / 2
  assert np.all(a.box_min[:, :2] >= -half) and np.all(a.box_max[:, :2] <= half)


def test_render_is_exact_for_a_box_and_the_ground():
  block = _one_box_block()
  c2w = _nadir_c2w(0.0, 0.0, 2.0)
  rgb, depth = city_block.render_views(block, c2w, 9, 9, 10.0, 10.0, 4.5, 4.5, far=7.0)
  assert rgb.shape == (1, 9, 9, 3) and depth.shape == (1, 9, 9)
  np.testing.assert_allclose(depth[0, 4, 4], 1.5, rtol=1e-6)        # roof at z = 0.5
  shade = city_block._AMBIENT + (1 - city_block._AMBIENT) * max(block.light[2], 0)
  np.testing.assert_allclose(rgb[0, 4, 4], block.roof[0] * shade, atol=1e-6)
  # Corner pixel misses the box: the ground at z = 0, at distance 2 / cos(angle).
  _, dirs = scene_lib.camera_rays(c2w, 9, 9, 10.0, 10.0, 4.5, 4.5)
  np.testing.assert_allclose(depth[0, 0, 0], 2.0 / -dirs[0, 0, 0, 2], rtol=1e-6)
  np.testing.assert_allclose(rgb[0, 0, 0], block.ground_colour * shade, atol=1e-6)


def test_sky_where_nothing_is_hit():
  block = _one_box_block()
  c2w = city._look_c2w(np.array([[0.0, -5.0, 3.0]]), np.array([[0.0, 0.0, 1.0]]),
                       np.array([np.pi / 2]))                       # looking up
  rgb, depth = city_block.render_views(block, c2w, 4, 4, 2.0, 2.0, 2.0, 2.0, far=7.0)
  np.testing.assert_allclose(depth, 7.0)
  np.testing.assert_allclose(rgb, np.broadcast_to(block.sky_colour, rgb.shape), atol=1e-6)


def test_facades_show_windows_and_walls():
  block = _one_box_block(box_max=np.array([[0.2, 0.2, 1.0]]))
  forward = np.array([[0.0, 1.0, 0.0]])                             # facing +y, at a wall
  c2w = city._look_c2w(np.array([[0.0, -1.0, 0.5]]), forward, np.array([np.pi / 2]))
  rgb, depth = city_block.render_views(block, c2w, 24, 24, 40.0, 40.0, 12.0, 12.0, far=7.0)
  _, dirs = scene_lib.camera_rays(c2w, 24, 24, 40.0, 40.0, 12.0, 12.0)
  np.testing.assert_allclose(depth[0, 12, 12], 0.8 / dirs[0, 12, 12, 1], rtol=1e-5)
  shade = city_block._AMBIENT + (1 - city_block._AMBIENT) * max(-block.light[1], 0)
  colours = rgb[0, 8:16, 8:16].reshape(-1, 3)
  is_window = np.all(np.abs(colours - block.window[0] * shade) < 1e-5, axis=-1)
  is_wall = np.all(np.abs(colours - block.facade[0] * shade) < 1e-5, axis=-1)
  assert is_window.any() and is_wall.any() and np.all(is_window | is_wall)


def test_aerial_cameras_target_their_cells():
  bounds = (-1.0, 1.0, -1.0, 1.0)
  c2w = city.aerial_cameras(bounds, (2, 2), 5, 1.5, 30.0, seed=3)
  assert c2w.shape == (20, 4, 4)
  scene_lib.check_rotations(c2w, 'cams', 'c2w')
  np.testing.assert_allclose(c2w[:, 2, 3], 1.5, rtol=1e-5)           # altitude
  axis = -c2w[:, :3, 2]
  np.testing.assert_allclose(np.degrees(np.arccos(-axis[:, 2])), 30.0, atol=1e-3)
  cells = scene_lib.cell_of_points(scene_lib.view_anchor_xy(c2w, 0.0), bounds)
  np.testing.assert_array_equal(cells, np.repeat(np.arange(4), 5))
  held = city.heldout_cameras(bounds, (2, 2), 5, 1.5, 30.0, seed=3)
  assert not np.allclose(held[:, :3, 3], c2w[:, :3, 3])
  held_cells = scene_lib.cell_of_points(scene_lib.view_anchor_xy(held, 0.0), bounds)
  np.testing.assert_array_equal(held_cells, np.repeat(np.arange(4), 5))


def test_city_dataset_split_and_consistency(dataset):
  train, test, heldout = dataset
  assert (len(train), len(test), len(heldout)) == (7, 3, 3)
  for s in train + test + heldout:
    s.validate()
    assert (s.near, s.far) == (train[0].near, train[0].far)
    assert s.depth.min() > s.near and s.depth.max() <= s.far
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
  for s in train + test:
    assert [len(v) for v in scene_lib.views_by_cell(s, require_all=True)] == [4] * 4
  for t, h in zip(test, heldout):
    assert h.num_views == 8 and h.bounds == t.bounds
    assert not np.allclose(h.c2w[:, :3, 3], t.c2w[:8, :3, 3])
  assert not np.allclose(train[0].images, train[1].images)
  again = city.make_city_dataset(num_blocks=10, seed=0, height=16, width=16,
                                 views_per_cell=4, heldout_views_per_cell=2)
  np.testing.assert_array_equal(again[1][2].images, test[2].images)


def test_default_dataset_renders_fast():
  start = time.perf_counter()
  train, _, _ = city.make_city_dataset(num_blocks=10, seed=1, height=32, width=32,
                                       views_per_cell=8, heldout_views_per_cell=2)
  assert time.perf_counter() - start < 10.0
  assert train[0].images.shape == (32, 32, 32, 3)
