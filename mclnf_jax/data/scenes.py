"""Scene signals of both splits (modality 'nerf'), generated or read once per process.

`scene_signals(data, scene, grid)` takes the plain `config.data` and `config.scene`
settings (dicts) and the (rows, cols) grid of ground cells, and returns
{'train': [...], 'test': [...]} of `SceneSignal`s: meta-training blocks without held-out
views, meta-test blocks with them, every block in one canonical frame (`common_frame`).

Datasets (data['name']):
  * 'city': scene.num_blocks procedural blocks (see `city`), 70% meta-train;
    scene.views_per_cell context views and about scene.heldout_views held-out views.
  * 'matrixcity': MatrixCity aerial blocks under data.root (see `matrixcity`),
    scene.train_blocks / scene.test_blocks block ids; held-out views from block_N_test.
  * 'transforms_json': nerfstudio / instant-ngp / Blender scenes, one block per scene
    folder under data.root named in scene.train_blocks / scene.test_blocks (see
    `transforms_json`). A folder holds transforms_train.json (+ transforms_test.json,
    the held-out views of a meta-test block), or a single transforms.json whose every
    scene.heldout_every-th view (0, k, 2k, ...) is held out of a meta-test block.
    Meta-training blocks use every view of their train (or only) file.
Views of 'matrixcity' and 'transforms_json' are resized to scene.image_width x
scene.image_height on load.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np

from mclnf_jax.data.scene import Scene, SceneSignal, normalized
from mclnf_jax.errors import UserError

SCENE_DATASETS = ('city', 'matrixcity', 'transforms_json')


def scene_signals(data: dict[str, Any], scene: dict[str, Any],
                  grid: tuple[int, ...]) -> dict[str, list[SceneSignal]]:
  """{'train': [...], 'test': [...]} scene signals of the data / scene settings."""
  key = json.dumps({'data': data, 'scene': scene, 'grid': list(grid)}, sort_keys=True)
  return _cached(key)


@functools.lru_cache(maxsize=2)
def _cached(key: str) -> dict[str, list[SceneSignal]]:
  settings = json.loads(key)
  d, s, grid = settings['data'], settings['scene'], tuple(settings['grid'])
  loaders = {'city': _city, 'matrixcity': _matrixcity, 'transforms_json': _transforms_json}
  if d['name'] not in loaders:
    raise UserError(f'unknown data.name={d["name"]!r} for scenes: use one of '
                    f'{", ".join(SCENE_DATASETS)}')
  train, test, heldout = loaders[d['name']](d, s, grid)
  return common_frame({'train': [SceneSignal(t, None) for t in train],
                       'test': [SceneSignal(t, h) for t, h in zip(test, heldout)]})


def common_frame(splits: dict[str, list[SceneSignal]]) -> dict[str, list[SceneSignal]]:
  """Every block in its canonical frame (ground bounds [-1, 1]^2, see scene.normalized),
  with one ray range covering all of them, so one routing grid and renderer serve all."""
  scaled = {k: [SceneSignal(normalized(s.context), s.heldout and normalized(s.heldout))
                for s in v] for k, v in splits.items()}
  scenes = [x for v in scaled.values() for s in v for x in s if x is not None]
  near, far = min(s.near for s in scenes), max(s.far for s in scenes)
  frame = lambda s: s and normalized(s, near, far)
  return {k: [SceneSignal(frame(s.context), frame(s.heldout)) for s in v]
          for k, v in splits.items()}


def block_ids(text: str, key: str, what: str) -> list[str]:
  """The comma-separated ids of config.scene.<key>; a UserError when there are none."""
  ids = [b.strip() for b in text.split(',') if b.strip()]
  if not ids:
    raise UserError(f'config.scene.{key} is empty: list {what}, e.g. '
                    f'--config.scene.{key}=1,2,3')
  return ids


def _city(d, s, grid):
  from mclnf_jax.data.city import make_city_dataset
  per_cell = -(-s['heldout_views'] // (grid[0] * grid[1]))
  return make_city_dataset(num_blocks=s['num_blocks'], seed=d['seed'],
                           height=d['resolution'], width=d['resolution'],
                           views_per_cell=s['views_per_cell'],
                           heldout_views_per_cell=per_cell, grid=grid,
                           altitude=s['altitude'], tilt_deg=s['tilt_deg'],
                           fov_deg=s['fov_deg'])


def _matrixcity(d, s, grid):
  from mclnf_jax.data.matrixcity import load_matrixcity_block
  del grid
  ids = lambda key: block_ids(s[key], key, 'MatrixCity block ids')
  load = lambda b, split, bounds=None: load_matrixcity_block(
      d['root'], b, split, s['scale'], (s['image_width'], s['image_height']),
      bounds=bounds)
  train = [load(b, 'train') for b in ids('train_blocks')]
  test = [load(b, 'train') for b in ids('test_blocks')]
  # Held-out views share their block's ground bounds, so both land in one frame.
  heldout = [load(b, 'test', t.bounds) for b, t in zip(ids('test_blocks'), test)]
  return train, test, heldout


def _transforms_json(d, s, grid):
  from mclnf_jax.data.transforms_json import load_transforms_json
  del grid
  root = os.path.expanduser(d['root'])
  if not root or not os.path.isdir(root):
    raise UserError(f'transforms_json scenes folder data.root={d["root"]!r} does not '
                    'exist: pass --config.data.root=<folder with one folder per scene, '
                    'each holding transforms.json or transforms_train.json>')
  every = s['heldout_every']
  if isinstance(every, bool) or not isinstance(every, int) or every < 2:
    raise UserError(f'config.scene.heldout_every={every!r} must be an integer >= 2')
  load = lambda path, bounds=None: load_transforms_json(
      path, resize=(s['image_width'], s['image_height']), bounds=bounds)
  what = 'scene folder names under data.root'
  train = [load(_scene_file(root, n, 'train_blocks')[0])
           for n in block_ids(s['train_blocks'], 'train_blocks', what)]
  test, heldout = [], []
  for name in block_ids(s['test_blocks'], 'test_blocks', what):
    path, test_path = _scene_file(root, name, 'test_blocks')
    scene = load(path)
    if test_path:
      test.append(scene)
      heldout.append(load(test_path, scene.bounds))
    else:
      context, held = _every_kth(scene, every)
      test.append(context)
      heldout.append(held)
  return train, test, heldout


def _scene_file(root: str, name: str, key: str) -> tuple[str, str | None]:
  """(views file, held-out views file or None) of the scene folder root/name."""
  folder = os.path.join(root, name)
  split = os.path.join(folder, 'transforms_train.json')
  if os.path.isfile(split):
    test = os.path.join(folder, 'transforms_test.json')
    return split, test if os.path.isfile(test) else None
  single = os.path.join(folder, 'transforms.json')
  if os.path.isfile(single):
    return single, None
  raise UserError(f'no scene {name!r} under data.root={root}: expected {single} or '
                  f'{split}; check --config.scene.{key}')


def _every_kth(scene: Scene, every: int) -> tuple[Scene, Scene]:
  """(context, held-out) views: views 0, k, 2k, ... are held out."""
  views = np.arange(scene.num_views)
  held = views % every == 0
  if held.all():
    raise UserError(f'{scene.name}: {scene.num_views} view(s), too few to hold out every '
                    f'{every}-th: add views, lower --config.scene.heldout_every or add a '
                    'transforms_train.json / transforms_test.json pair')
  return scene.subset(views[~held]), scene.subset(views[held])
