"""A posed multi-view scene and the NumPy geometry shared by its loaders.

Conventions (every loader converts to these):
  * World axes are z-up; the ground plane is horizontal and the cell grid lives on
    its (x, y) coordinates.
  * `c2w` maps camera to world with OpenGL camera axes: the camera looks down its
    -z axis, +y is up in the image, +x is right.
  * Pixel (row v, column u) is sampled at its centre (u + 0.5, v + 0.5).
  * Ray directions are UNIT vectors, so a ray parameter t is a Euclidean distance
    and depth maps hold distance along the ray (not z-depth).
  * Cells are indexed row-major over `grid = (rows, cols)`: rows split y (from
    ymin), columns split x (from xmin), cell = row * cols + col.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

from mclnf_jax import files
from mclnf_jax.data.common import fail

Bounds = tuple[float, float, float, float]   # (xmin, xmax, ymin, ymax)
ORTHONORMAL_TOL = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
  """Posed RGB views of one signal (a city block), in the module's conventions.

  images: [V, H, W, 3] float32 in [0, 1].
  c2w:    [V, 4, 4] float32 camera-to-world (OpenGL camera axes).
  focal:  (fx, fy) in pixels; principal: (cx, cy) in pixels.
  near, far: ray range in scene units.
  bounds: (xmin, xmax, ymin, ymax) of the ground region split into cells.
  depth:  optional [V, H, W] distance along each unit ray (far where empty).
  ground_z: height of the ground plane, if known (used to place views in cells).
  name:   where the scene came from, for error messages.
  """
  images: np.ndarray
  c2w: np.ndarray
  focal: tuple[float, float]
  principal: tuple[float, float]
  near: float
  far: float
  bounds: Bounds
  depth: np.ndarray | None = None
  ground_z: float | None = 0.0
  name: str = 'scene'

  @property
  def num_views(self) -> int:
    return int(self.images.shape[0])

  @property
  def height(self) -> int:
    return int(self.images.shape[1])

  @property
  def width(self) -> int:
    return int(self.images.shape[2])

  def rays(self) -> tuple[np.ndarray, np.ndarray]:
    """(origins, unit directions), each [V, H, W, 3]."""
    return camera_rays(self.c2w, self.height, self.width, *self.focal, *self.principal)

  def subset(self, views: Sequence[int] | np.ndarray) -> Scene:
    """The same scene restricted to some views (e.g. those of one cell)."""
    views = np.asarray(views, dtype=np.int64)
    depth = None if self.depth is None else self.depth[views]
    return dataclasses.replace(self, images=self.images[views], c2w=self.c2w[views],
                               depth=depth)

  def validate(self) -> Scene:
    """Raises UserError on inconsistent shapes, non-finite values or bad rotations."""
    _check_shapes(self)
    _check_finite(self)
    check_rotations(self.c2w, self.name, 'c2w')
    if not 0.0 <= self.near < self.far:
      fail(self.name, 'near/far', f'need 0 <= near < far, got near={self.near}, '
           f'far={self.far}; pass a valid ray range')
    xmin, xmax, ymin, ymax = self.bounds
    if not (xmin < xmax and ymin < ymax):
      fail(self.name, 'bounds', f'need xmin < xmax and ymin < ymax, got {self.bounds}')
    return self


class SceneSignal(NamedTuple):
  """One signal of the scene modality: a block's context views and its held-out views."""
  context: Scene                 # views whose rays form the tasks
  heldout: Optional[Scene]       # evaluation views (None for meta-training blocks)


def _check_shapes(scene: Scene) -> None:
  """Images [V,H,W,3], c2w [V,4,4], depth [V,H,W], two-tuples of intrinsics."""
  img, c2w = np.asarray(scene.images), np.asarray(scene.c2w)
  if img.ndim != 4 or img.shape[-1] != 3 or img.shape[0] == 0:
    fail(scene.name, 'images', f'expected a non-empty [V, H, W, 3] array, got '
         f'shape {img.shape}')
  if c2w.shape != (img.shape[0], 4, 4):
    fail(scene.name, 'c2w', f'expected shape {(img.shape[0], 4, 4)} (one 4x4 per '
         f'image), got {c2w.shape}')
  if scene.depth is not None and np.shape(scene.depth) != img.shape[:3]:
    fail(scene.name, 'depth', f'expected shape {img.shape[:3]}, got '
         f'{np.shape(scene.depth)}')
  if len(scene.focal) != 2 or len(scene.principal) != 2:
    fail(scene.name, 'focal/principal', 'expected (fx, fy) and (cx, cy)')


def _check_finite(scene: Scene) -> None:
  arrays = {'images': scene.images, 'c2w': scene.c2w,
            'focal': scene.focal, 'principal': scene.principal}
  if scene.depth is not None:
    arrays['depth'] = scene.depth
  for field, value in arrays.items():
    if not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
      fail(scene.name, field, 'contains NaN or inf; fix the source data')
  if float(np.min(scene.focal)) <= 0:
    fail(scene.name, 'focal', f'focal lengths must be positive, got {scene.focal}')


def check_rotations(c2w: np.ndarray, source: str, field: str,
                    tol: float = ORTHONORMAL_TOL) -> None:
  """Raises UserError unless every 3x3 block of c2w [V,4,4] is orthonormal."""
  rot = np.asarray(c2w, dtype=np.float64)[:, :3, :3]                # [V, 3, 3]
  err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(axis=(1, 2))  # [V]
  bad = np.flatnonzero(~(err <= tol))
  if bad.size:
    fail(source, field, f'rotation of view {int(bad[0])} is not orthonormal (max '
         f'|R R^T - I| = {err[bad[0]]:.3g} > {tol}); store a rigid camera-to-world')


def camera_rays(c2w: np.ndarray, height: int, width: int, fx: float, fy: float,
                cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
  """Pinhole rays through pixel centres: (origins, unit directions), [V, H, W, 3].

  Camera-frame direction of pixel (u, v) is ((u+.5-cx)/fx, -(v+.5-cy)/fy, -1)
  (OpenGL: image rows grow downwards while camera +y is up, camera looks down -z).
  """
  c2w = np.asarray(c2w, dtype=np.float32)                            # [V, 4, 4]
  u, v = np.meshgrid(np.arange(width, dtype=np.float32) + 0.5,
                     np.arange(height, dtype=np.float32) + 0.5)      # [H, W]
  cam = np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], axis=-1)  # [H,W,3]
  dirs = np.einsum('vij,hwj->vhwi', c2w[:, :3, :3], cam)             # [V, H, W, 3]
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  origins = np.broadcast_to(c2w[:, None, None, :3, 3], dirs.shape)   # [V, H, W, 3]
  return np.ascontiguousarray(origins), dirs.astype(np.float32)


def cell_of_points(xy: np.ndarray, bounds: Bounds,
                   grid: tuple[int, int] = (2, 2)) -> np.ndarray:
  """Row-major cell index [...] of ground points xy [..., 2]; outside points clamp."""
  xmin, xmax, ymin, ymax = bounds
  rows, cols = grid
  xy = np.asarray(xy, dtype=np.float64)
  col = np.floor((xy[..., 0] - xmin) / (xmax - xmin) * cols).astype(np.int64)
  row = np.floor((xy[..., 1] - ymin) / (ymax - ymin) * rows).astype(np.int64)
  return np.clip(row, 0, rows - 1) * cols + np.clip(col, 0, cols - 1)


def view_anchor_xy(c2w: np.ndarray, ground_z: float | None) -> np.ndarray:
  """Ground xy [V, 2] that places each view in a cell.

  Where the optical axis (camera -z) points down and the ground height is known,
  this is where the axis meets the ground; otherwise the camera's own xy.
  """
  c2w = np.asarray(c2w, dtype=np.float64)
  origin, axis = c2w[:, :3, 3], -c2w[:, :3, 2]                       # [V, 3] each
  anchor = origin[:, :2].copy()
  if ground_z is None:
    return anchor
  down = axis[:, 2] < -1e-6
  t = (ground_z - origin[down, 2]) / axis[down, 2]                   # [V_down]
  hits = t > 0
  idx = np.flatnonzero(down)[hits]
  anchor[idx] = origin[idx, :2] + t[hits, None] * axis[idx, :2]
  return anchor


def views_by_cell(scene: Scene, grid: tuple[int, int] = (2, 2), *,
                  require_all: bool = False) -> list[np.ndarray]:
  """View indices of each cell (row-major); the context set of each task.

  With require_all, an empty cell is a UserError naming the scene and the cell.
  """
  cells = cell_of_points(view_anchor_xy(scene.c2w, scene.ground_z), scene.bounds, grid)
  groups = [np.flatnonzero(cells == c) for c in range(grid[0] * grid[1])]
  if require_all:
    for c, views in enumerate(groups):
      if views.size == 0:
        fail(scene.name, 'views', f'cell {c} (row {c // grid[1]}, col {c % grid[1]}) '
             f'of grid {grid} has no views; add views over it or use a coarser grid')
  return groups


def own_cell_fraction(scene: Scene, grid: tuple[int, int] = (2, 2)) -> np.ndarray:
  """[cells]: the share of each cell's context pixels whose surface point (origin + depth
  x direction; pixels that hit nothing left out) lies in that cell.

  A cell's expert is fitted to whole rays of its views but renders only the points over
  its own cell; this says how much of what it is fitted to it will render. Needs depth.
  """
  if scene.depth is None:
    fail(scene.name, 'depth', 'own_cell_fraction needs per-pixel depth')
  _, height, width, _ = np.shape(scene.images)
  origins, dirs = camera_rays(scene.c2w, height, width, *scene.focal, *scene.principal)
  depth = np.asarray(scene.depth, np.float32)
  cells = cell_of_points((origins + dirs * depth[..., None])[..., :2], scene.bounds, grid)
  surface = depth < 0.999 * scene.far
  shares = []
  for cell, members in enumerate(views_by_cell(scene, grid)):
    hits = surface[members]
    shares.append(float((hits & (cells[members] == cell)).sum() / max(hits.sum(), 1)))
  return np.asarray(shares)


def bounds_of_views(c2w: np.ndarray, ground_z: float | None,
                    pad: float = 1e-3) -> Bounds:
  """Bounds (xmin, xmax, ymin, ymax) around every view's anchor point, padded."""
  xy = view_anchor_xy(c2w, ground_z)                                 # [V, 2]
  lo, hi = xy.min(axis=0), xy.max(axis=0)
  margin = np.maximum((hi - lo) * pad, 1e-6)
  return (float(lo[0] - margin[0]), float(hi[0] + margin[0]),
          float(lo[1] - margin[1]), float(hi[1] + margin[1]))


def focal_from_angle(angle_x: float, width: int) -> float:
  """Focal length in pixels from a horizontal field of view in radians."""
  return 0.5 * width / np.tan(0.5 * angle_x)


# Caching: scenes are saved as .npz and replaced atomically, so a crash mid-write
# never leaves a truncated file that a later run would trust.

_ARRAY_FIELDS = ('images', 'c2w', 'depth')


def save_scene_npz(scene: Scene, path: str, key: str = '') -> None:
  """Writes scene to path atomically (see files.atomic_write)."""
  meta = {f.name: _plain(getattr(scene, f.name)) for f in dataclasses.fields(scene)
          if f.name not in _ARRAY_FIELDS}
  arrays = {'images': scene.images, 'c2w': scene.c2w}
  if scene.depth is not None:
    arrays['depth'] = scene.depth
  files.write_npz(path, meta=np.array(json.dumps(meta)), key=np.array(key), **arrays)


def load_scene_npz(path: str, key: str = '') -> Scene | None:
  """The scene cached at path, or None when absent, unreadable or of another key."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      if str(z['key']) != key:
        return None
      meta = _parse_meta(str(z['meta']))
      depth = z['depth'] if 'depth' in z.files else None
      return Scene(images=z['images'], c2w=z['c2w'], depth=depth, **meta)
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _plain(value):
  """Scene metadata as JSON-ready Python values (tuples become lists)."""
  if isinstance(value, (tuple, list)):
    return [float(x) for x in value]
  if isinstance(value, (float, int, np.floating, np.integer)):
    return float(value)
  return value


def _parse_meta(text: str) -> dict:
  meta = json.loads(text)
  for name in ('focal', 'principal', 'bounds'):
    meta[name] = tuple(float(x) for x in meta[name])
  return meta


def normalized(scene: Scene, near: float | None = None, far: float | None = None) -> Scene:
  """The scene moved and scaled so its ground bounds fit [-1, 1] x [-1, 1] (centred).

  Blocks of a city sit at different world positions; one canonical frame per block lets
  a single routing grid and one ray range serve all of them (as NeRF normalises scenes).
  Positions, ground height, near/far and depths scale by the same factor; rotations and
  images are unchanged. near/far (in the new units) override the scaled ones if given.
  The returned bounds are the whole square; a non-square block fills it along its long
  side, and a grid of cells still splits it at the block's centre lines.
  """
  xmin, xmax, ymin, ymax = scene.bounds
  scale = 2.0 / max(xmax - xmin, ymax - ymin)
  shift = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2, 0.0], np.float32)
  c2w = scene.c2w.copy()
  c2w[:, :3, 3] = (c2w[:, :3, 3] - shift) * scale
  return dataclasses.replace(
      scene, c2w=c2w.astype(np.float32), bounds=(-1.0, 1.0, -1.0, 1.0),
      near=scene.near * scale if near is None else near,
      far=scene.far * scale if far is None else far,
      depth=None if scene.depth is None else scene.depth * scale,
      ground_z=None if scene.ground_z is None else scene.ground_z * scale)
