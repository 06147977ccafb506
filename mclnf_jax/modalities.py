"""Config -> modality and signals: the one place that knows every modality by name."""
import functools
import json

import ml_collections
import numpy as np

from mclnf_jax.errors import UserError
from mclnf_jax.tasks import Modality

MODALITIES = ('image', 'video', 'audio', 'nerf')


def _unknown(config) -> UserError:
  return UserError(f'unknown config.modality={config.modality!r}: use one of '
                   f'{", ".join(MODALITIES)}')


def make_modality(config: ml_collections.ConfigDict) -> Modality:
  d, t = config.data, config.tasks
  blocks, split = tuple(t.blocks), t.split
  if config.modality == 'image':
    from mclnf_jax.tasks.image import ImageTasks
    return ImageTasks((d.resolution, d.resolution), 3, blocks, split)
  if config.modality == 'video':
    from mclnf_jax.tasks.video import VideoTasks
    return VideoTasks((d.frames, d.resolution, d.resolution), 3, blocks, split)
  if config.modality == 'audio':
    from mclnf_jax.tasks.audio import SAMPLE_RATE, AudioTasks
    return AudioTasks((int(round(d.seconds * SAMPLE_RATE)),), 1, blocks, split)
  if config.modality == 'nerf':
    return _scene_tasks(config)
  raise _unknown(config)


def load_signals(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """All signals of a split as one array [N, *signal_shape] (float32)."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  d = config.data
  data.num_signals = (d.num_train + d.num_val if d.num_train else 0) if split == 'train' \
      else d.num_test
  if config.modality == 'image':
    from mclnf_jax.data.images import load_images
    return load_images(data, split)
  if config.modality == 'video':
    from mclnf_jax.data.video import load_video
    return load_video(data, split)
  if config.modality == 'audio':
    from mclnf_jax.data.audio import load_audio
    return load_audio(data, split)[..., None]
  if config.modality == 'nerf':
    return _scenes(_scene_key(config))[split]
  raise _unknown(config)


def _scene_key(config: ml_collections.ConfigDict) -> str:
  """The settings scene data depends on, as a hashable cache key."""
  return json.dumps({'data': config.data.to_dict(), 'scene': config.scene.to_dict(),
                     'blocks': list(config.tasks.blocks)}, sort_keys=True)


@functools.lru_cache(maxsize=2)
def _scenes(key: str) -> dict[str, list]:
  """Scene signals of both splits (generated or read once per process)."""
  from mclnf_jax.tasks.scene import SceneSignal
  settings = json.loads(key)
  d, s, grid = settings['data'], settings['scene'], tuple(settings['blocks'])
  if d['name'] == 'city':
    from mclnf_jax.data.city import make_city_dataset
    per_cell = -(-s['heldout_views'] // (grid[0] * grid[1]))
    train, test, heldout = make_city_dataset(
        num_blocks=s['num_blocks'], seed=d['seed'], height=d['resolution'],
        width=d['resolution'], views_per_cell=s['views_per_cell'],
        heldout_views_per_cell=per_cell, grid=grid)
  elif d['name'] == 'matrixcity':
    from mclnf_jax.data.matrixcity import load_matrixcity_block
    ids = lambda text, key: [b.strip() for b in text.split(',') if b.strip()] or _no_blocks(key)
    load = lambda b, split: load_matrixcity_block(
        d['root'], b, split, s['scale'], (s['image_width'], s['image_height']))
    train = [load(b, 'train') for b in ids(s['train_blocks'], 'train_blocks')]
    test_ids = ids(s['test_blocks'], 'test_blocks')
    test = [load(b, 'train') for b in test_ids]
    heldout = [load(b, 'test') for b in test_ids]
  else:
    raise UserError(f'unknown data.name={d["name"]!r} for scenes: use city or matrixcity')
  return _common_frame({'train': [SceneSignal(t, None) for t in train],
                        'test': [SceneSignal(t, h) for t, h in zip(test, heldout)]})


def _common_frame(splits: dict[str, list]) -> dict[str, list]:
  """Every block in its canonical frame (ground bounds [-1, 1]^2, see scene.normalized),
  with one ray range covering all of them, so one routing grid and renderer serve all."""
  from mclnf_jax.data.scene import normalized
  from mclnf_jax.tasks.scene import SceneSignal
  scaled = {k: [SceneSignal(normalized(s.context), s.heldout and normalized(s.heldout))
                for s in v] for k, v in splits.items()}
  scenes = [x for v in scaled.values() for s in v for x in s if x is not None]
  near, far = min(s.near for s in scenes), max(s.far for s in scenes)
  frame = lambda s: s and normalized(s, near, far)
  return {k: [SceneSignal(frame(s.context), frame(s.heldout)) for s in v]
          for k, v in splits.items()}


def _no_blocks(key: str):
  raise UserError(f'config.scene.{key} is empty: list MatrixCity block ids, e.g. '
                  f'--config.scene.{key}=1,2,3')


def _scene_tasks(config: ml_collections.ConfigDict):
  from mclnf_jax.tasks.scene import SceneTasks
  signals = _scenes(_scene_key(config))
  first = signals['train'][0].context
  r, s = config.render, config.scene
  blocks = tuple(config.tasks.blocks)
  if len(blocks) != 2:
    raise UserError(f'tasks.blocks={blocks} must be (rows, cols) of ground cells for scenes')
  return SceneTasks(grid=blocks, bounds=tuple(first.bounds), near=first.near, far=first.far,
                    image_shape=(first.height, first.width), query_views=s.heldout_views,
                    rays_per_task=s.rays_per_task, tto_rays_per_task=s.tto_rays_per_task,
                    num_samples=r.num_samples,
                    hierarchical_samples=r.hierarchical_samples,
                    background=tuple(r.background), chunk=r.chunk, seed=config.seed)
