"""Scene signals of both splits (data/scenes.py): transforms.json scene folders, the
MatrixCity processed pose files read as such, one-line errors, and a CLI run."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from mclnf_jax.data import city, matrixcity
from mclnf_jax.data import scene as scene_lib
from mclnf_jax.data.scenes import scene_signals
from mclnf_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENE_KEYS = dict(num_blocks=0, views_per_cell=0, heldout_views=1, scale=0.01,
                  heldout_every=4, image_width=8, image_height=8)


def write_scene(folder, scene, name='transforms.json', images='images'):
  """Writes `scene` as a transforms.json (fl_x style) with PNG views; returns its path."""
  os.makedirs(os.path.join(folder, images), exist_ok=True)
  frames = []
  for i, (img, c2w) in enumerate(zip(scene.images, scene.c2w)):
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
        os.path.join(folder, images, f'{i:03d}.png'))
    frames.append({'file_path': f'{images}/{i:03d}.png',
                   'transform_matrix': np.asarray(c2w, np.float64).tolist()})
  meta = dict(fl_x=scene.focal[0], fl_y=scene.focal[1], cx=scene.principal[0],
              cy=scene.principal[1], near=scene.near, far=scene.far, frames=frames)
  path = os.path.join(folder, name)
  with open(path, 'w') as f:
    json.dump(meta, f)
  return path


@pytest.fixture(scope='module')
def scenes_root(tmp_path_factory):
  """Six 8x8 city blocks as scene folders: a-d meta-train (d as transforms_train.json
  alone), e with a transforms_train / transforms_test pair, f one transforms.json."""
  root = tmp_path_factory.mktemp('scenes')
  train, test, heldout = city.make_city_dataset(num_blocks=6, height=8, width=8,
                                                views_per_cell=2, heldout_views_per_cell=1)
  for name, scene in zip('abc', train):
    write_scene(str(root / name), scene)
  write_scene(str(root / 'd'), train[3], 'transforms_train.json')
  write_scene(str(root / 'e'), test[0], 'transforms_train.json', 'train')
  write_scene(str(root / 'e'), heldout[0], 'transforms_test.json', 'test')
  write_scene(str(root / 'f'), test[1])
  return root, train, test, heldout


def _signals(root, **scene):
  return scene_signals({'name': 'transforms_json', 'root': str(root), 'seed': 0},
                       dict(SCENE_KEYS, **scene), (2, 2))


def test_transforms_json_scene_folders(scenes_root):
  root, train, test, heldout = scenes_root
  signals = _signals(root, train_blocks='a,b,c,d', test_blocks='e,f')
  assert [s.heldout for s in signals['train']] == [None] * 4
  e, f = signals['test']
  assert (e.context.num_views, e.heldout.num_views) == (8, 4)     # the test file
  assert (f.context.num_views, f.heldout.num_views) == (6, 2)     # views 0 and 4 held out
  np.testing.assert_allclose(f.heldout.images, test[1].images[[0, 4]], atol=0.5 / 255 + 1e-6)
  np.testing.assert_allclose(e.heldout.images, heldout[0].images, atol=0.5 / 255 + 1e-6)
  every = [x for v in signals.values() for s in v for x in s if x is not None]
  assert len({(x.near, x.far) for x in every}) == 1                 # one ray range
  assert all(x.bounds == (-1.0, 1.0, -1.0, 1.0) for x in every)
  # A block's held-out views share its frame: same camera-to-world as the source.
  ctx = e.context.c2w[:, :3, 3] - e.heldout.c2w[0, :3, 3]
  raw = test[0].c2w[:, :3, 3] - heldout[0].c2w[0, :3, 3]
  np.testing.assert_allclose(ctx / np.linalg.norm(ctx), raw / np.linalg.norm(raw), atol=1e-5)


@pytest.mark.parametrize('scene, phrase', [
    (dict(train_blocks='', test_blocks='e'), 'config.scene.train_blocks is empty'),
    (dict(train_blocks='a', test_blocks=' , '), 'config.scene.test_blocks is empty'),
    (dict(train_blocks='a,zz', test_blocks='e'), "no scene 'zz' under data.root"),
    (dict(train_blocks='a', test_blocks='f', heldout_every=1), 'heldout_every=1'),
])
def test_transforms_json_bad_settings_are_one_line(scenes_root, scene, phrase):
  with pytest.raises(UserError) as err:
    _signals(scenes_root[0], **scene)
  assert phrase in str(err.value) and '\n' not in str(err.value)


def test_transforms_json_missing_root_is_one_line(tmp_path):
  with pytest.raises(UserError) as err:
    _signals(tmp_path / 'nowhere', train_blocks='a', test_blocks='b')
  assert 'nowhere' in str(err.value) and 'does not exist' in str(err.value)
  assert '\n' not in str(err.value)


def test_unknown_scene_dataset():
  with pytest.raises(UserError, match='use one of city, matrixcity, transforms_json'):
    scene_signals({'name': 'llff', 'root': '', 'seed': 0}, SCENE_KEYS, (2, 2))


def test_matrixcity_processed_pose_files_are_transforms_json_scenes(tmp_path):
  """aerial/pose/block_X/transforms_{train,test}.json read as data.name=transforms_json."""
  train, _, _ = city.make_city_dataset(num_blocks=2, height=8, width=8, views_per_cell=2,
                                       heldout_views_per_cell=1)
  block_scene = train[0]
  root = str(tmp_path)
  matrixcity.write_matrixcity_fixture(root, block_scene, 1)
  pose = os.path.join(root, 'small_city', 'aerial', 'pose', 'block_A')
  angle = float(2 * np.arctan(block_scene.width / (2 * block_scene.focal[0])))
  for split, views in (('train', range(8)), ('test', (0, 5))):
    frames = [{'file_path': f'../../block_1/rgb/{i:04d}.png',
               'transform_matrix': np.asarray(block_scene.c2w[i], np.float64).tolist()}
              for i in views]
    os.makedirs(pose, exist_ok=True)
    with open(os.path.join(pose, f'transforms_{split}.json'), 'w') as f:
      json.dump({'camera_angle_x': angle, 'frames': frames}, f)
  pose_root = os.path.dirname(pose)
  signals = _signals(pose_root, train_blocks='block_A', test_blocks='block_A')
  context, held = signals['test'][0]
  np.testing.assert_allclose(context.c2w[:, :3, :3], block_scene.c2w[:, :3, :3], atol=1e-6)
  np.testing.assert_allclose(held.c2w, context.c2w[[0, 5]], atol=1e-6)
  assert all(len(v) for v in scene_lib.views_by_cell(context, require_all=True))
  with pytest.raises(UserError) as err:
    _signals(pose_root, train_blocks='block_B', test_blocks='block_A')
  assert 'pose/block_B/transforms_train.json' in str(err.value)


@pytest.mark.slow
def test_cli_runs_on_transforms_json_scenes(scenes_root, tmp_path):
  root = scenes_root[0]
  overrides = dict(
      **{'data.name': 'transforms_json', 'data.root': str(root), 'data.num_val': 1,
         'data.num_test': 1, 'learners': 'modular', 'methods.modular.width': 8,
         'field.depth': 3, 'field.pos_freqs': 2, 'field.dir_freqs': 1,
         'meta.steps': 2, 'meta.batch_size': 1, 'meta.inner_steps': 1,
         'meta.val_every': 1, 'meta.log_every': 1, 'meta.save_every': 2,
         'eval.max_steps': 2, 'eval.batch_size': 1, 'eval.num_shown': 1,
         'render.num_samples': 8, 'render.hierarchical_samples': 0, 'render.chunk': 256,
         'scene.train_blocks': 'a,b,c', 'scene.test_blocks': 'f',
         'scene.heldout_every': 4, 'scene.heldout_views': 2, 'scene.rays_per_task': 16,
         'scene.tto_rays_per_task': 0, 'scene.image_width': 12, 'scene.image_height': 12})
  # 8x8 views on disk, upsampled to 12x12 on load: SSIM needs an 11x11 window.
  flags = [f'--config.{k}={v}' for k, v in overrides.items()]
  done = subprocess.run(
      [sys.executable, '-m', 'mclnf_jax.main', '--config=configs/nerf_transforms_json.py',
       f'--workdir={tmp_path / "work"}', *flags], cwd=REPO, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert os.path.getsize(tmp_path / 'work' / 'table_psnr.md') > 0
  # What a user with real scenes sees: RGB / depth / opacity per method, the routing map
  # and the fly-through (one learner here, so one panel).
  for f in ('scene_views_0.png', 'scene_routing_0.png', 'flythrough_0.gif',
            'results/modular_flythrough_0.gif'):
    assert os.path.getsize(tmp_path / 'work' / f) > 0, f
  with open(tmp_path / 'work' / 'modular' / 'config.json') as f:
    assert json.load(f)['data']['name'] == 'transforms_json'


def test_city_camera_keys_reach_the_generated_views():
  """scene.altitude / tilt_deg / fov_deg: lower, steeper, narrower drone views keep more
  of each cell's context over its own cell (data.scene.own_cell_fraction)."""
  keys = dict(num_blocks=3, views_per_cell=4, heldout_views=4, altitude=1.5, tilt_deg=30.0,
              fov_deg=60.0)
  data = {'name': 'city', 'seed': 0, 'resolution': 16}
  own = lambda scene: np.mean([scene_lib.own_cell_fraction(s.context)
                               for s in scene_signals(data, scene, (2, 2))['train']])
  default = own(keys)
  closer = own(dict(keys, altitude=1.0, tilt_deg=0.0, fov_deg=50.0))
  assert 0.4 < default < 0.6 and closer > default + 0.2
