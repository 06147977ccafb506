"""Signals sampled on a regular grid (images, video, audio) as task sequences.

A signal of shape [*axes, C] becomes T = prod(grid) tasks, the cells of the task grid:
  split='grid':       contiguous cells, `grid[a]` of them along axis a (the paper's
                      180x180 -> four 180x45 strips is grid=(1, 4); video frames along
                      time are grid=(T, 1, 1); audio segments grid=(T,)),
  split='resolution': interleaved sub-grids, sample i_a of axis a in task i_a % grid[a]
                      (appendix D: grid=(2, 2) gives 4 half-resolution sub-images).
Tasks are numbered row-major over the task grid. Coordinates map sample index 0..n-1 of
each axis to [-1, 1]; routing maps a coordinate back to its sample and so to its task.
The query set is the whole signal in raster order.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax.errors import UserError
from mclnf_jax.types import Episode

SPLITS = ('grid', 'resolution')


def grid_coords(shape: tuple[int, ...]) -> np.ndarray:
  """[*shape, ndim] coordinates in [-1, 1] (a single sample sits at 0)."""
  axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32)
          for n in shape]
  return np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1)


@dataclasses.dataclass(frozen=True)
class GridTasks:
  """Task split, routing and reshaping shared by every grid modality."""
  shape: tuple[int, ...]          # the sample grid, e.g. (H, W), (F, H, W), (L,)
  channels: int
  grid: tuple[int, ...]           # tasks along each axis
  split: str = 'grid'

  @property
  def num_tasks(self) -> int:
    return math.prod(self.grid)

  @property
  def in_dim(self) -> int:
    return len(self.shape)

  @property
  def out_dim(self) -> int:
    return self.channels

  def __post_init__(self):
    if self.split not in SPLITS:
      raise UserError(f'unknown tasks.split={self.split!r}: use one of {", ".join(SPLITS)}')
    if len(self.grid) != len(self.shape) or min(self.grid) < 1:
      raise UserError(f'tasks.grid={tuple(self.grid)} needs one positive count per axis of '
                      f'a signal of shape {tuple(self.shape)}')
    if any(n % b for n, b in zip(self.shape, self.grid)):
      raise UserError(f'a signal of shape {tuple(self.shape)} does not split into '
                      f'{tuple(self.grid)} equal cells: change tasks.grid or the data size')

  def task_index(self, index: tuple):
    """Task of the sample at per-axis integer `index` (numpy or jax arrays)."""
    task = 0
    for i, n, b in zip(index, self.shape, self.grid):
      part = i // (n // b) if self.split == 'grid' else i % b
      task = task * b + part
    return task

  def episode(self, signal: np.ndarray) -> Episode:
    expected = tuple(self.shape) + (self.channels,)
    if signal.shape != expected:
      raise UserError(f'signal of shape {signal.shape} given to tasks for {expected}: '
                      'check the data settings (resolution, frames, seconds)')
    coords = grid_coords(self.shape).reshape(-1, self.in_dim)
    values = signal.reshape(-1, self.channels).astype(np.float32)
    task = self.task_index(np.unravel_index(np.arange(len(values)), self.shape))
    order = np.argsort(task, kind='stable')      # raster order inside each task
    t, m = self.num_tasks, len(values) // self.num_tasks
    return Episode(context_x=coords[order].reshape(t, m, self.in_dim),
                   context_y=values[order].reshape(t, m, self.channels),
                   query_x=coords, query_y=values)

  def predictor(self, apply_fn):
    return apply_fn

  def route(self, x: jax.Array) -> jax.Array:
    index = tuple(jnp.round((x[:, a] + 1) / 2 * (n - 1)).astype(jnp.int32)
                  for a, n in enumerate(self.shape))
    return jax.nn.one_hot(self.task_index(index), self.num_tasks)

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {}

  def to_signal(self, y: jax.Array) -> jax.Array:
    return y.reshape(*self.shape, self.channels)
