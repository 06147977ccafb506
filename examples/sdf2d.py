"""Your own modality in one file: 2-D signed distance fields of random shapes.

A signal is the signed distance d(x) (negative inside) of a random union of circles and
rotated boxes, sampled on an R x R grid over [-1, 1]^2; its tasks are the cells of a
rows x cols grid of the square (config.tasks.grid, default the four quadrants), learned
one after another. Metrics: the IoU of the reconstructed shape (the zero sublevel set,
higher is better) and the MSE of the distances (lower is better). Figures: distance maps,
inside blue, outside orange, the zero level set black.

This file is a config file, a modality and its data at once. Loading it registers the
modality 'sdf2d' (`mclnf_jax.tasks.factory.register_modality`), and its `get_config`
sets `config.modality = 'sdf2d'`, so the unchanged command line runs it:

    python -m mclnf_jax.main --config=examples/sdf2d.py --workdir=workdir/sdf2d \
        [--config.learners=ol,modular --config.meta.steps=100 ...]

A modality implements `mclnf_jax.tasks.Modality`: `episode` (signal -> tasks + query
set), `predictor` (identity: the field's output is the signal), `route` (input -> its
task's expert), `to_signal`, `metrics` (jittable), `host_metrics`, `visuals` (figure
specs of `mclnf_jax.visuals`) and `flythrough_rays` (None: no camera here), plus
`in_dim` / `out_dim` / `num_tasks`. Learners see it only as a `TaskSpec`.
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mclnf_jax.configs import paper
from mclnf_jax.data.signals import signal_count
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import factory
from mclnf_jax.types import Episode
from mclnf_jax.visuals import ImageGrid

NAME = 'sdf2d'
DEFAULT_TRAIN = 64        # meta-train + meta-validation shapes when data.num_train is 0


# ------------------------------------------------------------------------- data --


def _box(p: np.ndarray, half: np.ndarray) -> np.ndarray:
  """Signed distance of points p [..., 2] to the box [-half, half] (exact)."""
  q = np.abs(p) - half
  return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)


def random_sdf(rng: np.random.Generator, resolution: int) -> np.ndarray:
  """[R, R, 1] float32: the signed distance of a union of 1-3 circles and boxes."""
  axis = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
  p = np.stack(np.meshgrid(axis, axis, indexing='ij'), axis=-1)     # [R, R, 2]
  d = np.full(p.shape[:2], np.inf, np.float32)
  for _ in range(rng.integers(1, 4)):
    q = p - rng.uniform(-0.6, 0.6, 2)
    if rng.random() < 0.5:
      shape = np.linalg.norm(q, axis=-1) - rng.uniform(0.15, 0.45)
    else:
      a = rng.uniform(0.0, np.pi)
      rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
      shape = _box(q @ rot.T, rng.uniform(0.1, 0.4, 2))
    d = np.minimum(d, shape)
  return d[..., None].astype(np.float32)


def load_signals(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """A split's shapes, [N, R, R, 1]: generated from data.seed, disjoint across splits."""
  d = config.data
  if d.name != 'shapes':
    raise UserError(f'the {NAME} modality generates its data: pass '
                    f'--config.data.name=shapes, not {d.name!r}')
  count = signal_count(config, split) or DEFAULT_TRAIN
  rng = np.random.default_rng((d.seed, 0 if split == 'train' else 1))
  return np.stack([random_sdf(rng, d.resolution) for _ in range(count)])


# --------------------------------------------------------------------- modality --


@dataclasses.dataclass(frozen=True)
class Sdf2dTasks:
  """Distance maps [R, R, 1]; (row, col) in [-1, 1]^2 -> d; tasks are grid cells."""
  resolution: int
  grid: tuple[int, int] = (2, 2)      # cells along rows, cols: T = rows * cols tasks

  in_dim = 2
  out_dim = 1

  def __post_init__(self):
    if len(self.grid) != 2 or min(self.grid) < 1 or any(self.resolution % g
                                                        for g in self.grid):
      raise UserError(f'tasks.grid={tuple(self.grid)} must be (rows, cols) dividing '
                      f'data.resolution={self.resolution}')

  @property
  def num_tasks(self) -> int:
    return self.grid[0] * self.grid[1]

  def _coords(self) -> np.ndarray:
    axis = np.linspace(-1.0, 1.0, self.resolution, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, indexing='ij'), -1).reshape(-1, 2)

  def _task(self, x):
    """Cell index (row-major) of coordinates x [N, 2] (numpy or jax)."""
    xp = jnp if isinstance(x, jax.Array) else np
    cell = xp.floor((x + 1.0) / 2.0 * xp.asarray(self.grid, x.dtype)).astype(xp.int32)
    cell = xp.clip(cell, 0, xp.asarray(self.grid) - 1)
    return cell[:, 0] * self.grid[1] + cell[:, 1]

  def episode(self, signal: np.ndarray) -> Episode:
    if signal.shape != (self.resolution, self.resolution, 1):
      raise UserError(f'a distance map of shape {signal.shape} given to tasks for '
                      f'{self.resolution}x{self.resolution}: check data.resolution')
    x, y = self._coords(), signal.reshape(-1, 1).astype(np.float32)
    order = np.argsort(self._task(x), kind='stable')       # task after task
    t = self.num_tasks
    return Episode(context_x=x[order].reshape(t, -1, 2), context_y=y[order].reshape(t, -1, 1),
                   query_x=x, query_y=y)

  def predictor(self, apply_fn):
    return apply_fn

  def route(self, field_x: jax.Array) -> jax.Array:
    return jax.nn.one_hot(self._task(field_x), self.num_tasks)

  def to_signal(self, y: jax.Array) -> jax.Array:
    return y.reshape(self.resolution, self.resolution, 1)

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    inside, truth = pred < 0, target < 0
    union = jnp.sum(inside | truth)
    iou = jnp.where(union > 0, jnp.sum(inside & truth) / jnp.maximum(union, 1), 1.0)
    return {'iou': iou, 'mse': jnp.mean((pred - target) ** 2)}

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {}

  def visuals(self, truths, recons, scores) -> list[ImageGrid]:
    """`reconstructions.png`: a row per shape, ground truth then each method, IoU under."""
    pixel = 2.0 / (self.resolution - 1)
    return [ImageGrid('', [distance_image(t, pixel) for t in truths],
                      [{m: distance_image(r, pixel) for m, r in row.items()} for row in recons],
                      list(scores))]

  def flythrough_rays(self, signal) -> None:
    return None


def distance_image(d: np.ndarray, pixel: float) -> np.ndarray:
  """[R, R, 1] distances -> [R, R, 3] in [0, 1]: blue inside, orange outside, banded by
  distance, the zero level set black."""
  d = np.asarray(d, np.float32)[..., 0]
  colour = np.where(d[..., None] < 0, [0.25, 0.45, 0.9], [0.95, 0.6, 0.25])
  shade = ((1.0 - 0.5 * np.exp(-3.0 * np.abs(d))) * (0.85 + 0.15 * np.cos(40 * d)))[..., None]
  image = colour * shade
  image[np.abs(d) < pixel / 2] = 0.0
  return np.clip(image, 0.0, 1.0).astype(np.float32)


def make_modality(config: ml_collections.ConfigDict) -> Sdf2dTasks:
  return Sdf2dTasks(resolution=config.data.resolution, grid=tuple(config.tasks.grid))


factory.register_modality(NAME, make_modality, load_signals)


# ----------------------------------------------------------------------- config --


def get_config() -> ml_collections.ConfigDict:
  """The image CPU scale (SIREN depth 4, single networks 64 wide against experts 32 wide,
  300 meta-steps) on 32x32 distance maps in quadrants."""
  c = paper.image('cpu')
  c.name = NAME
  c.modality = NAME
  c.learners = 'ol,er,mol,modular,modular_fim'
  c.data.update(name='shapes', root='', resolution=32, num_train=64)
  c.tasks.update(grid=(2, 2), split='grid')
  return c
