"""Images as task sequences: regions (the paper's strips) or interleaved sub-images.

Coordinates are (row, col) mapped to [-1, 1] with pixel centres at the ends, so pixel
(0, 0) is (-1, -1) and (H-1, W-1) is (1, 1). The query set is the whole image in raster
order; routing maps a coordinate back to its pixel and from there to its task.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax import metrics
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import Episode


def pixel_coords(height: int, width: int) -> np.ndarray:
  """[H, W, 2] (row, col) coordinates in [-1, 1]."""
  rows = np.linspace(-1.0, 1.0, height, dtype=np.float32)
  cols = np.linspace(-1.0, 1.0, width, dtype=np.float32)
  return np.stack(np.meshgrid(rows, cols, indexing='ij'), axis=-1)


@dataclasses.dataclass(frozen=True)
class ImageTasks:
  """Splits an [H, W, C] image into `num_tasks` tasks.

  split='grid': a rows x cols grid of regions in raster order; the paper's 180x180 ->
    four 180x45 strips is grid=(1, 4).
  split='resolution': appendix D; with s = sqrt(T), task (a, b) holds pixels
    [a::s, b::s], a sub-image of the whole area at 1/s of the resolution.
  """
  height: int
  width: int
  channels: int = 3
  num_tasks: int = 4
  split: str = 'grid'
  grid: tuple[int, int] = (1, 4)

  in_dim = 2

  @property
  def out_dim(self) -> int:
    return self.channels

  def __post_init__(self):
    h, w, t = self.height, self.width, self.num_tasks
    if t < 1:
      raise UserError(f'tasks.num_tasks={t} must be >= 1')
    if self.split == 'grid':
      rows, cols = self.grid
      if rows * cols != t:
        raise UserError(f'tasks.grid={self.grid} has {rows * cols} regions but tasks.num_tasks={t}: '
                        'make rows*cols equal the number of tasks')
      if h % rows or w % cols:
        raise UserError(f'a {h}x{w} image does not split into a {rows}x{cols} grid of equal regions: '
                        'change tasks.grid or data.resolution')
    elif self.split == 'resolution':
      s = math.isqrt(t)
      if s * s != t or h % s or w % s:
        raise UserError(f'tasks.split=resolution needs a square number of tasks dividing the image; '
                        f'got num_tasks={t} for {h}x{w}')
    else:
      raise UserError(f'unknown tasks.split={self.split!r}: use grid or resolution')

  def task_index(self, rows: np.ndarray, cols: np.ndarray):
    """Task of pixel (row, col); works on numpy and jax integer arrays."""
    if self.split == 'grid':
      grid_rows, grid_cols = self.grid
      return (rows // (self.height // grid_rows)) * grid_cols + cols // (self.width // grid_cols)
    s = math.isqrt(self.num_tasks)
    return (rows % s) * s + cols % s

  def episode(self, image: np.ndarray) -> Episode:
    if image.shape != (self.height, self.width, self.channels):
      raise UserError(f'image of shape {image.shape} given to tasks for '
                      f'{(self.height, self.width, self.channels)}: check data.resolution')
    coords = pixel_coords(self.height, self.width).reshape(-1, 2)
    values = image.reshape(-1, self.channels).astype(np.float32)
    rows, cols = np.divmod(np.arange(self.height * self.width), self.width)
    task = self.task_index(rows, cols)
    order = np.argsort(task, kind='stable')      # raster order inside each task
    m = self.height * self.width // self.num_tasks
    return Episode(context_x=coords[order].reshape(self.num_tasks, m, 2),
                   context_y=values[order].reshape(self.num_tasks, m, self.channels),
                   query_x=coords, query_y=values)

  def predictor(self, apply_fn):
    return apply_fn

  def route(self, x: jax.Array) -> jax.Array:
    rows = jnp.round((x[:, 0] + 1) / 2 * (self.height - 1)).astype(jnp.int32)
    cols = jnp.round((x[:, 1] + 1) / 2 * (self.width - 1)).astype(jnp.int32)
    return jax.nn.one_hot(self.task_index(rows, cols), self.num_tasks)

  def to_signal(self, y: jax.Array) -> jax.Array:
    return y.reshape(self.height, self.width, self.channels)

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    pred = jnp.clip(pred, 0.0, 1.0)
    return {'psnr': metrics.psnr(pred, target), 'ssim': metrics.ssim(pred, target)}

  def save_visuals(self, path_stem: str, truths, recons, scores) -> None:
    """Ground truth beside each method's reconstruction (the paper's Fig. 3)."""
    from mclnf_jax import report
    report.image_grid(path_stem + '.png', list(truths), list(recons), list(scores))
