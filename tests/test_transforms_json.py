"""transforms.json and MatrixCity readers: round trips and one-line errors."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from mclnf_jax.data import city
from mclnf_jax.data import matrixcity
from mclnf_jax.data import scene as scene_lib
from mclnf_jax.data import transforms_json as tj
from mclnf_jax.errors import UserError


@pytest.fixture(scope='module')
def block_scene():
  train, _, _ = city.make_city_dataset(num_blocks=1, seed=3, height=16, width=16,
                                       views_per_cell=2, heldout_views_per_cell=1)
  return train[0]


def _write_png(path, img):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)


def _write_transforms(folder, s, *, intrinsics='angle', ext=True):
  frames = []
  for i, (img, c2w) in enumerate(zip(s.images, s.c2w)):
    _write_png(os.path.join(folder, 'images', f'{i:03d}.png'), img)
    frames.append({'file_path': f'images/{i:03d}' + ('.png' if ext else ''),
                   'transform_matrix': np.asarray(c2w, np.float64).tolist()})
  meta = {'frames': frames}
  if intrinsics == 'angle':
    meta['camera_angle_x'] = float(2 * np.arctan(s.width / (2 * s.focal[0])))
  else:
    meta.update(fl_x=s.focal[0], fl_y=s.focal[1], cx=s.principal[0],
                cy=s.principal[1], w=s.width, h=s.height)
  path = os.path.join(folder, 'transforms.json')
  _dump(path, meta)
  return path


def _dump(path, meta):
  with open(path, 'w') as f:
    json.dump(meta, f)


def _edit(path, fn):
  with open(path) as f:
    meta = json.load(f)
  fn(meta)
  _dump(path, meta)


def _assert_one_line(err, *parts):
  msg = str(err.value)
  assert '\n' not in msg, msg
  for part in parts:
    assert part in msg, (part, msg)


# ---------------------------------------------------------------- transforms.json


@pytest.mark.parametrize('intrinsics, ext', [('angle', True), ('pinhole', False)])
def test_roundtrip(tmp_path, block_scene, intrinsics, ext):
  path = _write_transforms(str(tmp_path), block_scene, intrinsics=intrinsics, ext=ext)
  s = tj.load_transforms_json(path, near=0.1, far=5.0, ground_z=0.0)
  np.testing.assert_allclose(s.images, block_scene.images, atol=0.5 / 255 + 1e-6)
  np.testing.assert_allclose(s.c2w, block_scene.c2w, atol=1e-6)
  np.testing.assert_allclose(s.focal, block_scene.focal, rtol=1e-6)
  np.testing.assert_allclose(s.principal, block_scene.principal)
  assert (s.near, s.far, s.name) == (0.1, 5.0, path)
  assert all(len(v) for v in scene_lib.views_by_cell(s))


def test_resize_scales_intrinsics(tmp_path, block_scene):
  path = _write_transforms(str(tmp_path), block_scene, intrinsics='pinhole')
  s = tj.load_transforms_json(path, resize=(8, 4))
  assert s.images.shape == (block_scene.num_views, 4, 8, 3)
  fx, fy = block_scene.focal
  np.testing.assert_allclose(s.focal, (fx / 2, fy / 4))
  np.testing.assert_allclose(s.principal, (4.0, 2.0))
  full = tj.load_transforms_json(path)
  box = full.images.reshape(-1, 4, 4, 8, 2, 3).mean(axis=(2, 4))   # area average
  np.testing.assert_allclose(s.images, box, atol=1e-5)
  assert (full.near, full.far) == (tj.BLENDER_NEAR, tj.BLENDER_FAR)


def test_cache_serves_the_second_load(tmp_path, block_scene):
  path = _write_transforms(str(tmp_path / 'scene'), block_scene)
  cache = str(tmp_path / 'cache')
  first = tj.load_transforms_json(path, resize=(8, 8), cache_dir=cache)
  os.remove(str(tmp_path / 'scene' / 'images' / '000.png'))      # only the cache has it
  second = tj.load_transforms_json(path, resize=(8, 8), cache_dir=cache)
  np.testing.assert_array_equal(first.images, second.images)
  with pytest.raises(UserError, match='not found'):
    tj.load_transforms_json(path, resize=(4, 4), cache_dir=cache)   # other options


def test_rgba_is_composited_over_background(tmp_path):
  rgba = np.zeros((2, 2, 4), np.uint8)
  rgba[0, 0] = (255, 0, 0, 255)
  Image.fromarray(rgba).save(str(tmp_path / 'a.png'))
  img = tj.read_rgb(str(tmp_path / 'a.png'), background=(0.0, 1.0, 0.0))
  np.testing.assert_allclose(img[0, 0], (1, 0, 0))
  np.testing.assert_allclose(img[1, 1], (0, 1, 0))


def _break_matrix(meta):
  meta['frames'][1]['transform_matrix'] = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]


def _skew_rotation(meta):
  meta['frames'][2]['transform_matrix'][0][0] = 1.5


def _mixed_sizes(folder):
  _write_png(os.path.join(folder, 'images', '001.png'), np.zeros((8, 8, 3)))


@pytest.mark.parametrize('edit, field, phrase', [
    (lambda m: m.pop('frames'), 'frames', 'missing'),
    (lambda m: m.update(frames=[]), 'frames', 'non-empty'),
    (lambda m: m['frames'][0].pop('transform_matrix'), 'frames[0].transform_matrix',
     'missing'),
    (_break_matrix, 'frames[1].transform_matrix', '4x4'),
    (_skew_rotation, 'frames[].transform_matrix', 'view 2 is not orthonormal'),
    (lambda m: m['frames'][0].pop('file_path'), 'frames[0].file_path', 'missing'),
    (lambda m: m['frames'][3].update(file_path='images/nope.png'),
     'frames[3].file_path', 'not found'),
    (lambda m: m.pop('camera_angle_x'), 'camera_angle_x', 'fl_x'),
    (lambda m: m.update(camera_angle_x='wide'), 'camera_angle_x', 'number'),
])
def test_bad_fields_name_file_and_field(tmp_path, block_scene, edit, field, phrase):
  path = _write_transforms(str(tmp_path), block_scene)
  _edit(path, edit)
  with pytest.raises(UserError) as err:
    tj.load_transforms_json(path)
  _assert_one_line(err, path, f"'{field}'", phrase)


def test_bad_files(tmp_path, block_scene):
  missing = str(tmp_path / 'none' / 'transforms.json')
  with pytest.raises(UserError) as err:
    tj.load_transforms_json(missing)
  _assert_one_line(err, missing, 'not found')
  path = _write_transforms(str(tmp_path), block_scene, intrinsics='pinhole')
  with open(path, 'a') as f:
    f.write('}{')
  with pytest.raises(UserError) as err:
    tj.load_transforms_json(path)
  _assert_one_line(err, path, 'malformed JSON')


def test_mixed_sizes_and_wrong_w(tmp_path, block_scene):
  path = _write_transforms(str(tmp_path), block_scene, intrinsics='pinhole')
  _edit(path, lambda m: m.update(w=99))
  with pytest.raises(UserError) as err:
    tj.load_transforms_json(path)
  _assert_one_line(err, path, "'w'", '16x16')
  _edit(path, lambda m: m.update(w=16))
  _mixed_sizes(str(tmp_path))
  with pytest.raises(UserError) as err:
    tj.load_transforms_json(path)
  _assert_one_line(err, path, "'frames[].file_path[1]'", 'share one size')


# ---------------------------------------------------------------- MatrixCity


def test_matrixcity_fixture_roundtrip(tmp_path, block_scene):
  root = str(tmp_path / 'MatrixCity')
  folder = matrixcity.write_matrixcity_fixture(root, block_scene, 5, scale=0.01)
  assert folder == os.path.join(root, 'small_city', 'aerial', 'block_5')
  assert os.path.isfile(os.path.join(folder, 'rgb', '0007.png'))
  with open(os.path.join(folder, 'transforms.json')) as f:
    meta = json.load(f)
  rot = np.array(meta['frames'][0]['rot_mat'])
  np.testing.assert_allclose(rot[:3, :3] * 100, block_scene.c2w[0, :3, :3], atol=1e-6)
  np.testing.assert_allclose(rot[:3, 3] * 0.01, block_scene.c2w[0, :3, 3], rtol=1e-6)
  s = matrixcity.load_matrixcity_block(root, 5, 'train', 0.01, resize=None,
                                       near=0.1, far=5.0, ground_z=0.0,
                                       bounds=block_scene.bounds)
  np.testing.assert_allclose(s.images, block_scene.images, atol=0.5 / 255 + 1e-6)
  np.testing.assert_allclose(s.c2w, block_scene.c2w, atol=1e-5)
  np.testing.assert_allclose(s.focal, block_scene.focal, rtol=1e-5)
  groups = scene_lib.views_by_cell(s, require_all=True)
  assert [g.tolist() for g in groups] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_matrixcity_resize_and_cache(tmp_path, block_scene, monkeypatch):
  root = str(tmp_path)
  matrixcity.write_matrixcity_fixture(root, block_scene, 'block_2', split='test')
  s = matrixcity.load_matrixcity_block(root, 2, 'test', resize=(8, 8))
  assert s.images.shape == (8, 8, 8, 3) and 'block_2' in s.name and 'test' in s.name
  np.testing.assert_allclose(s.focal[0], block_scene.focal[0] / 2, rtol=1e-5)
  cache = os.path.join(root, 'small_city', 'aerial', 'block_2_test', '.mclnf_cache')
  assert os.listdir(cache) == ['test_8x8.npz']
  monkeypatch.setattr(tj, 'read_images', None)      # a second read must not decode
  again = matrixcity.load_matrixcity_block(root, 2, 'test', resize=(8, 8))
  np.testing.assert_array_equal(again.images, s.images)


def test_matrixcity_release_layout_without_rgb_folder(tmp_path, block_scene):
  folder = matrixcity.write_matrixcity_fixture(str(tmp_path / 'tmp'), block_scene, 1)
  dest = tmp_path / 'root' / 'small_city' / 'aerial' / 'train' / 'block_1'
  os.makedirs(dest)
  for name in os.listdir(os.path.join(folder, 'rgb')):
    os.rename(os.path.join(folder, 'rgb', name), str(dest / name))
  os.rename(os.path.join(folder, 'transforms.json'), str(dest / 'transforms.json'))
  s = matrixcity.load_matrixcity_block(str(tmp_path / 'root'), 1, resize=None,
                                       use_cache=False)
  assert s.num_views == block_scene.num_views


def test_matrixcity_missing_root_says_where_to_get_it(tmp_path):
  with pytest.raises(UserError) as err:
    matrixcity.load_matrixcity_block(str(tmp_path / 'nowhere'), 1)
  _assert_one_line(err, 'nowhere', 'MatrixCity project release', 'small_city/aerial',
                   'configs/nerf_quickstart.py')
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(UserError) as err:
    matrixcity.load_matrixcity_block(str(tmp_path / 'empty'), 4)
  _assert_one_line(err, 'block_4/transforms.json')


def _rot_not_divided(meta):
  rot = np.array(meta['frames'][1]['rot_mat'])
  rot[:3, :3] *= 100                                  # forgot the /100 rule
  meta['frames'][1]['rot_mat'] = rot.tolist()


def _mixed_matrixcity_sizes(folder):
  _write_png(os.path.join(folder, 'rgb', '0003.png'), np.zeros((4, 4, 3)))


@pytest.mark.parametrize('edit, field, phrase', [
    (lambda m: m.pop('camera_angle_x'), 'camera_angle_x', 'missing'),
    (lambda m: m['frames'][0].pop('rot_mat'), 'frames[0].rot_mat', 'missing'),
    (lambda m: m['frames'][0].update(rot_mat=[[1, 0], [0, 1]]), 'frames[0].rot_mat',
     '4x4'),
    (lambda m: m['frames'][2].update(frame_index='two'), 'frames[2].frame_index',
     'integer'),
    (lambda m: m['frames'][2].update(frame_index=42), 'frames[2].frame_index',
     'rgb/0042.png not found'),
    (_rot_not_divided, 'frames[].rot_mat (after the x100 rule)',
     'view 1 is not orthonormal'),
    (lambda m: m.update(frames={}), 'frames', 'non-empty'),
])
def test_matrixcity_bad_fields(tmp_path, block_scene, edit, field, phrase):
  folder = matrixcity.write_matrixcity_fixture(str(tmp_path), block_scene, 3)
  path = os.path.join(folder, 'transforms.json')
  _edit(path, edit)
  with pytest.raises(UserError) as err:
    matrixcity.load_matrixcity_block(str(tmp_path), 3, use_cache=False)
  _assert_one_line(err, path, f"'{field}'", phrase)


def test_matrixcity_mixed_sizes(tmp_path, block_scene):
  folder = matrixcity.write_matrixcity_fixture(str(tmp_path), block_scene, 3)
  _mixed_matrixcity_sizes(folder)
  with pytest.raises(UserError) as err:
    matrixcity.load_matrixcity_block(str(tmp_path), 3, use_cache=False)
  _assert_one_line(err, 'transforms.json', '0003.png is 4x4', 'share one size')


def test_matrixcity_cell_without_views_names_block_and_cell(tmp_path, block_scene):
  three_cells = block_scene.subset(np.arange(6))           # cell 3's views dropped
  matrixcity.write_matrixcity_fixture(str(tmp_path), three_cells, 7)
  s = matrixcity.load_matrixcity_block(str(tmp_path), 7, resize=None, ground_z=0.0,
                                       bounds=block_scene.bounds, use_cache=False)
  with pytest.raises(UserError) as err:
    scene_lib.views_by_cell(s, (2, 2), require_all=True)
  _assert_one_line(err, 'MatrixCity block_7', 'cell 3', 'no views')
