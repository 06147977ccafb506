"""MatrixCity aerial blocks as released (Li et al., ICCV 2023), read into Scenes.

Layout read (the first existing of these under `root`, `_test` for split='test'):
  small_city/aerial/block_N/          transforms.json, rgb/NNNN.png
  small_city/aerial/{train,test}/block_N[_test]/   (release archives: NNNN.png)
`transforms.json` holds a top-level `camera_angle_x` and `frames[]`, each with a
`frame_index`, a `rot_mat` and optionally a `path` sub-folder. `rot_mat` is a 4x4
camera-to-world in OpenGL axes whose 3x3 rotation is stored divided by 100 (Unreal's
centimetre scale), so the loader multiplies it by 100; the translation is in the
dataset's units (centimetres) and is multiplied by `scale` (0.01: metres). Images
are `rgb/{frame_index:04d}.png` (or `{frame_index:04d}.png` beside the json). The
processed pose files (`aerial/pose/block_X/transforms_{train,test}.json`) are
nerfstudio style: read them as data.name='transforms_json' scenes (see `scenes`).

Each block is resized once (the paper: 1920x1080 -> 480x270) and cached as .npz.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from PIL import Image

from mclnf_jax import files
from mclnf_jax.data import scene as scene_lib
from mclnf_jax.data import transforms_json as tj
from mclnf_jax.data.common import fail
from mclnf_jax.errors import UserError

ROT_SCALE = 100.0       # rot_mat stores R / 100
DEFAULT_SCALE = 0.01    # centimetres -> metres
_SPLITS = ('train', 'test')


def _missing_root(root: str) -> UserError:
  return UserError(
      f"MatrixCity not found at data.root={root!r}: get it from the MatrixCity project "
      'release (Li et al., ICCV 2023) and pass --config.data.root=<folder holding '
      'small_city/aerial/block_N/transforms.json with rgb/NNNN.png images>; '
      'configs/nerf_quickstart.py runs offline on the procedural city instead.')


def _block_name(block: int | str) -> str:
  name = str(block)
  return name if name.startswith('block_') else f'block_{name}'


def block_dir(root: str, block: int | str, split: str = 'train') -> str:
  """The folder of one block's split; UserError when root or the block is missing."""
  if split not in _SPLITS:
    fail(root, 'split', f'expected one of {_SPLITS}, got {split!r}')
  if not os.path.isdir(root):
    raise _missing_root(root)
  name = _block_name(block) + ('_test' if split == 'test' else '')
  candidates = [os.path.join(root, *parts, name) for parts in (
      ('small_city', 'aerial'), ('small_city', 'aerial', split), ('aerial',),
      ('aerial', split), (), (split,))]
  for path in candidates:
    if os.path.isfile(os.path.join(path, 'transforms.json')):
      return path
  fail(root, 'block', f'no {name}/transforms.json under root (expected '
       f'{candidates[0]}/transforms.json); check the block id and split')


# ---------------------------------------------------------------- reading


def _frame_index(frame: dict[str, Any], source: str, i: int) -> int:
  value = tj.get_field(frame, 'frame_index', source, f'frames[{i}].')
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    fail(source, f'frames[{i}].frame_index',
         f'expected a non-negative integer, got {value!r}')
  return value


def _image_path(folder: str, frame: dict[str, Any], index: int, source: str,
                i: int) -> str:
  sub = frame.get('path', '')
  if not isinstance(sub, str):
    fail(source, f'frames[{i}].path', f'expected a sub-folder name, got {sub!r}')
  base = os.path.join(folder, sub)
  for path in (os.path.join(base, 'rgb', f'{index:04d}.png'),
               os.path.join(base, f'{index:04d}.png')):
    if os.path.isfile(path):
      return path
  fail(source, f'frames[{i}].frame_index',
       f'image {os.path.join(base, "rgb", f"{index:04d}.png")} not found; restore '
       'the image or drop the frame')


def read_c2w(frame: dict[str, Any], scale: float, source: str, i: int) -> np.ndarray:
  """rot_mat -> c2w [4, 4]: rotation x100, translation x scale."""
  c2w = tj.get_matrix(frame, 'rot_mat', source, f'frames[{i}].')
  c2w[:3, :3] *= ROT_SCALE
  c2w[:3, 3] *= scale
  return c2w


def _ray_range(c2w: np.ndarray, ground_z: float | None) -> tuple[float, float]:
  """A rough (near, far) from the camera layout; pass explicit values when known.

  extent = max(xy span of the cameras, camera height above the ground (or z = 0)),
  near = 1% and far = 3x of it.
  """
  pos = c2w[:, :3, 3]
  span = float(np.linalg.norm(pos[:, :2].max(0) - pos[:, :2].min(0)))
  height = float(np.abs(pos[:, 2] - (ground_z or 0.0)).max())
  extent = max(span, height, 1e-6)
  return 0.01 * extent, 3.0 * extent


def _read_block(folder: str, name: str, split: str, scale: float,
                resize: tuple[int, int] | None, near: float | None,
                far: float | None, ground_z: float | None,
                bounds: scene_lib.Bounds | None) -> scene_lib.Scene:
  source = os.path.join(folder, 'transforms.json')
  meta = tj.read_json(source)
  frames = tj.get_frames(meta, source)
  angle = tj.get_angle(meta, 'camera_angle_x', source)
  indices = [_frame_index(f, source, i) for i, f in enumerate(frames)]
  paths = [_image_path(folder, f, k, source, i)
           for i, (f, k) in enumerate(zip(frames, indices))]
  first = {}
  for i, (p, k) in enumerate(zip(paths, indices)):
    if p in first:
      fail(source, f'frames[{i}].frame_index', f'{k} repeats frames[{first[p]}] (the same '
           'image twice); drop one of them')
    first[p] = i
  c2w = np.stack([read_c2w(f, scale, source, i) for i, f in enumerate(frames)])
  scene_lib.check_rotations(c2w, source, 'frames[].rot_mat (after the x100 rule)')
  images, size0 = tj.read_images(paths, source, 'frames[].frame_index', resize)
  fx = scene_lib.focal_from_angle(angle, size0[0])
  intr = tj.scale_intrinsics((fx, fx, size0[0] / 2, size0[1] / 2), size0,
                             (images.shape[2], images.shape[1]))
  default_near, default_far = _ray_range(c2w, ground_z)
  scene = scene_lib.Scene(
      images=images, c2w=c2w.astype(np.float32), focal=intr[:2], principal=intr[2:],
      near=default_near if near is None else float(near),
      far=default_far if far is None else float(far),
      bounds=bounds or scene_lib.bounds_of_views(c2w, ground_z), ground_z=ground_z,
      name=f'MatrixCity {name} ({split}, {source})')
  return scene.validate()


def _cache_path(folder: str, cache_dir: str | None, name: str, split: str,
                resize: tuple[int, int] | None) -> str:
  size = 'full' if resize is None else f'{resize[0]}x{resize[1]}'
  if cache_dir:
    return os.path.join(cache_dir, f'matrixcity_{name}_{split}_{size}.npz')
  return os.path.join(folder, '.mclnf_cache', f'{split}_{size}.npz')


def load_matrixcity_block(
    root: str, block: int | str, split: str = 'train', scale: float = DEFAULT_SCALE,
    resize: tuple[int, int] | None = (480, 270), *, near: float | None = None,
    far: float | None = None, ground_z: float | None = None,
    bounds: scene_lib.Bounds | None = None, cache_dir: str | None = None,
    use_cache: bool = True) -> scene_lib.Scene:
  """One MatrixCity aerial block as a Scene, resized and cached once per block.

  ground_z: the ground height in scaled units, if known; then each view's cell is
  where its optical axis meets the ground, else the camera's own xy. near/far
  default to a rough range from the camera layout (see `_ray_range`); bounds (the
  ground region split into cells) to the span of the views' anchor points.
  The cache is an .npz in cache_dir (or block/.mclnf_cache), keyed by the json's
  mtime and every option, written atomically; an unwritable cache is skipped.
  """
  folder = block_dir(root, block, split)
  name = _block_name(block)
  resize = tj.check_resize(resize, os.path.join(folder, 'transforms.json'))
  args = (folder, name, split, scale, resize, near, far, ground_z, bounds)
  if not use_cache:
    return _read_block(*args)
  key = tj.cache_key(os.path.join(folder, 'transforms.json'), scale=scale,
                     resize=resize, near=near, far=far, ground_z=ground_z,
                     bounds=bounds)
  path = _cache_path(folder, cache_dir, name, split, resize)
  cached = scene_lib.load_scene_npz(path, key)
  if cached is not None:
    return cached
  scene = _read_block(*args)
  try:
    scene_lib.save_scene_npz(scene, path, key)
  except OSError as e:
    logging.warning('MatrixCity cache not written to %s (%s); reading uncached.', path, e)
  return scene


# ---------------------------------------------------------------- test fixture


def write_matrixcity_fixture(root: str, block_scene: scene_lib.Scene,
                             block_id: int | str, *, split: str = 'train',
                             scale: float = DEFAULT_SCALE) -> str:
  """Writes block_scene in MatrixCity's layout under root; returns the block folder.

  PNG images at rgb/NNNN.png, a `camera_angle_x`, and `rot_mat` with the rotation
  divided by 100 and the translation divided by `scale`, so that
  `load_matrixcity_block(root, block_id, split, scale, resize=None)` reads it back.
  """
  fx, fy = block_scene.focal
  w, h = block_scene.width, block_scene.height
  if abs(fx - fy) > 1e-6 * fx or block_scene.principal != (w / 2, h / 2):
    fail(block_scene.name, 'focal/principal', 'MatrixCity stores only '
         'camera_angle_x, so need fx == fy and a centred principal point')
  name = _block_name(block_id) + ('_test' if split == 'test' else '')
  folder = os.path.join(root, 'small_city', 'aerial', name)
  os.makedirs(os.path.join(folder, 'rgb'), exist_ok=True)
  frames = []
  for i, (img, c2w) in enumerate(zip(block_scene.images, block_scene.c2w)):
    png = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    files.atomic_write(os.path.join(folder, 'rgb', f'{i:04d}.png'),
                       lambda f, png=png: png.save(f, format='PNG'), binary=True)
    rot_mat = np.asarray(c2w, np.float64).copy()
    rot_mat[:3, :3] /= ROT_SCALE
    rot_mat[:3, 3] /= scale
    frames.append({'frame_index': i, 'rot_mat': rot_mat.tolist()})
  meta = {'camera_angle_x': float(2 * np.arctan(w / (2 * fx))), 'frames': frames}
  files.write_json(os.path.join(folder, 'transforms.json'), meta)
  return folder
