"""Streams to learn from: the embedded city flown over cell by cell, an embedded clip
frame by frame, and a synthetic image of many small cells (the throughput benchmark).

A `Source` holds the tasks in arrival order, (x, y, cell) each, and per task a probe
(inputs, targets) on which `psnr` measures how well a stream still knows that task:
scenes: the cell's held-out views, rendered; grids: the task's own samples.
"""
import dataclasses
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from mclnf_jax import metrics
from mclnf_jax.data import city, signals
from mclnf_jax.data.scene import SceneSignal, views_by_cell
from mclnf_jax.data.scenes import common_frame
from mclnf_jax.tasks import Modality
from mclnf_jax.tasks.factory import make_modality
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.tasks.scene import SceneTasks

CELL_SIZE = 1.0          # city units per ground cell (buildings 8-20% of the block side)
BUILDINGS_PER_CELL = 1   # building placements tried per cell
VIEWS_PER_CELL = 4       # context views over each cell
QUERY_POINTS = 4096      # inputs of the latency query


class Task(NamedTuple):
  x: np.ndarray      # [m, in_dim] context inputs (scenes: a pool of rays [m, 6])
  y: np.ndarray      # [m, d] targets
  cell: int


@dataclasses.dataclass
class Source:
  """A stream's tasks, the layout they come from and how each is measured."""
  kind: str
  description: str
  config: ml_collections.ConfigDict     # its layout (tasks.grid, data.frames) set
  modality: Modality
  tasks: list[Task]
  probes: list[tuple[np.ndarray, np.ndarray]]    # per task: (inputs, targets)
  query_x: np.ndarray                            # [QUERY_POINTS, in_dim] for latency

  def psnr(self, stream: Any, task: int) -> float:
    """PSNR (dB) of the stream's prediction of task `task`'s probe."""
    x, y = self.probes[task]
    return float(metrics.psnr(np.clip(stream.query(x), 0.0, 1.0), y))


def serpentine(rows: int, cols: int) -> list[int]:
  """Cells (row-major ids) along a lawnmower flight path: row 0 left to right, row 1
  right to left, ..."""
  path = []
  for r in range(rows):
    cols_in_order = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
    path += [r * cols + c for c in cols_in_order]
  return path


def city_source(config: ml_collections.ConfigDict, grid: int, limit: int = 0) -> Source:
  """One procedural city block of grid x grid ground cells (`data.city`), flown over
  along `serpentine`: per cell a pool of its context views' rays, probed on its held-out
  views. `config`: a nerf config (its scene, render and data.resolution are used)."""
  d, s, r = config.data, config.scene, config.render
  _, test, held = city.make_city_dataset(
      num_blocks=2, seed=d.seed, height=d.resolution, width=d.resolution,
      views_per_cell=VIEWS_PER_CELL, heldout_views_per_cell=1, grid=(grid, grid),
      size=CELL_SIZE * grid, n_buildings=BUILDINGS_PER_CELL * grid * grid)
  signal = common_frame({'test': [SceneSignal(test[0], held[0])]})['test'][0]
  scene = signal.context
  modality = SceneTasks(
      grid=(grid, grid), bounds=tuple(scene.bounds), near=scene.near, far=scene.far,
      image_shape=(scene.height, scene.width), query_views=1,
      rays_per_task=s.rays_per_task, tto_rays_per_task=s.tto_rays_per_task,
      pool_rays=s.pool_rays, query_rays_per_task=s.query_rays_per_task,
      stratified=s.stratified, num_samples=r.num_samples,
      hierarchical_samples=r.hierarchical_samples, background=tuple(r.background),
      chunk=r.chunk, seed=config.seed)
  episode = modality.episode(signal)
  origins, dirs = signal.heldout.rays()
  rays = np.concatenate([origins, dirs], -1).astype(np.float32)
  views = views_by_cell(signal.heldout, (grid, grid), require_all=True)
  path = serpentine(grid, grid)[:limit or None]
  tasks = [Task(episode.context_x[c], episode.context_y[c], c) for c in path]
  probes = [(rays[views[c]].reshape(-1, 6),
             signal.heldout.images[views[c]].reshape(-1, 3).astype(np.float32))
            for c in path]
  stream_config = config.copy_and_resolve_references()
  stream_config.tasks.grid = (grid, grid)
  return Source('city', f'city block of {grid}x{grid} cells ({scene.height}x{scene.width} '
                f'views, {VIEWS_PER_CELL} per cell), serpentine flight', stream_config,
                modality, tasks, probes, np.concatenate([p[0] for p in probes])[:QUERY_POINTS])


def video_source(config: ml_collections.ConfigDict, frames: int, limit: int = 0) -> Source:
  """The first meta-test clip of a video config with `frames` frames, one task each."""
  c = config.copy_and_resolve_references()
  c.data.update(frames=frames, num_test=1)
  c.tasks.update(grid=(frames, 1, 1), split='grid')
  clip = np.asarray(signals.load_signals(c, 'test')[0], np.float32)
  modality = make_modality(c)
  episode = modality.episode(clip)
  tasks = [Task(episode.context_x[t], episode.context_y[t], t)
           for t in range(frames)][:limit or None]
  rng = np.random.default_rng(0)
  query = rng.uniform(-1, 1, (QUERY_POINTS, modality.in_dim)).astype(np.float32)
  return Source('video', f'embedded clip of {frames} frames of {clip.shape[1]}x'
                f'{clip.shape[2]}, frame by frame', c, modality, tasks,
                [(t.x, t.y) for t in tasks], query)


def load(config: ml_collections.ConfigDict, grid: int, frames: int, limit: int = 0) -> Source:
  """The example's stream of a config: the city for scenes, a clip for video."""
  if config.modality == 'nerf':
    return city_source(config, grid, limit)
  if config.modality == 'video':
    return video_source(config, frames, limit)
  from mclnf_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  raise UserError(f'the stream example takes a nerf or video config, not '
                  f'modality={config.modality!r}: use configs/nerf_quickstart.py or '
                  'configs/video_quickstart.py')


def cells_image(side: int = 128, cells: int = 32, seed: int = 0) -> Source:
  """A smooth synthetic image of side x side pixels cut into cells x cells tasks (the
  benchmark's small fields: side^2 / cells^2 pixels a task), in row-major order."""
  rng = np.random.default_rng(seed)
  u = np.linspace(0, 4 * np.pi, side)
  a, b, phase = rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 3), rng.uniform(0, 6, 3)
  image = (0.5 + 0.4 * np.sin(a * u[:, None, None] + b * u[None, :, None] + phase))
  modality = ImageTasks((side, side), 3, (cells, cells))
  episode = modality.episode(image.astype(np.float32))
  tasks = [Task(episode.context_x[t], episode.context_y[t], t) for t in range(cells ** 2)]
  query = rng.uniform(-1, 1, (QUERY_POINTS, 2)).astype(np.float32)
  return Source('image', f'{side}x{side} image of {cells}x{cells} cells', None, modality,
                tasks, [(t.x, t.y) for t in tasks], query)
