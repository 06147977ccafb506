"""City-scale scenes: posed views -> rays; tasks are ground cells; predictions are rendered.

A signal is a `SceneSignal`: the context views of one block (grouped by the ground cell
they look at, one task per cell, seen in sequence) and optionally held-out views for
evaluation. Each task's context set is `rays_per_task` rays drawn once (seeded) from its
cell's views (Algorithm 1, line 7); meta-test blocks may draw more (`tto_rays_per_task`):
test-time adaptation is first-order and cheap, while meta-training's second-order
memory bounds its ray count, and few rays overfit (held-out views get worse). A
prediction is formed by volume rendering the field along each ray; routing sends each
3D sample point to the expert of the cell under it (Algorithm 1, lines 28-30). Inputs
are rays [N, 6] = (origin, unit direction); field inputs are points [N, 6] = (xyz, unit
direction).
"""
import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax import render
from mclnf_jax.data.scene import Scene, SceneSignal, views_by_cell
from mclnf_jax.errors import UserError
from mclnf_jax.types import Episode
from mclnf_jax.tasks.image import rgb_metrics
from mclnf_jax.tasks.video import frame_visuals
from mclnf_jax.visuals import FlythroughRays, Visual


def _rays(scene: Scene) -> np.ndarray:
  origins, dirs = scene.rays()
  return np.concatenate([origins, dirs], -1).astype(np.float32)      # [V, H, W, 6]


@dataclasses.dataclass(frozen=True)
class SceneTasks:
  """Rays of a block's views, split by ground cell; rendering forms predictions."""
  grid: tuple[int, int]            # ground cells (rows along y, cols along x)
  bounds: tuple[float, float, float, float]   # (xmin, xmax, ymin, ymax) of the cells
  near: float
  far: float
  image_shape: tuple[int, int]     # (H, W) of every view
  query_views: int                 # views in the query set (held-out views of test blocks)
  rays_per_task: int
  tto_rays_per_task: int = 0       # for signals with held-out views; 0: rays_per_task
  num_samples: int = 32
  hierarchical_samples: int = 0
  background: tuple[float, float, float] = (1.0, 1.0, 1.0)
  chunk: int = 4096                # rays rendered at once when forming large predictions
  seed: int = 0

  in_dim = 6
  out_dim = 4                      # field output: rgb logits + density
  channels = 3                     # prediction: rgb

  @property
  def num_tasks(self) -> int:
    return self.grid[0] * self.grid[1]

  def episode(self, signal: SceneSignal) -> Episode:
    scene = signal.context
    if (scene.height, scene.width) != tuple(self.image_shape):
      raise UserError(f'{scene.name}: views of {scene.height}x{scene.width} but the config '
                      f'expects {self.image_shape[0]}x{self.image_shape[1]}: '
                      'check data.resolution')
    rays, rgb = _rays(scene), scene.images.astype(np.float32)
    rng = np.random.default_rng([self.seed, zlib.crc32(scene.name.encode())])
    count = self.rays_per_task
    if signal.heldout is not None and self.tto_rays_per_task:
      count = self.tto_rays_per_task
    xs, ys = [], []
    for cell, views in enumerate(views_by_cell(scene, self.grid, require_all=True)):
      cell_rays, cell_rgb = rays[views].reshape(-1, 6), rgb[views].reshape(-1, 3)
      pick = rng.choice(len(cell_rays), count, replace=len(cell_rays) < count)
      xs.append(cell_rays[pick])
      ys.append(cell_rgb[pick])
    query = signal.heldout if signal.heldout is not None else scene
    if query.num_views < self.query_views:
      raise UserError(f'{query.name}: {query.num_views} views for a query set of '
                      f'{self.query_views}: lower data.heldout_views_per_cell')
    views = np.arange(self.query_views)
    return Episode(context_x=np.stack(xs), context_y=np.stack(ys),
                   query_x=_rays(query)[views].reshape(-1, 6),
                   query_y=query.images[views].reshape(-1, 3).astype(np.float32))

  def predictor(self, apply_fn):
    """Rays [N, 6] -> rendered RGB [N, 3]; in chunks of `chunk` rays when N is large."""
    def render_rgb(params, rays):
      out = render.render_rays(apply_fn, params, rays[:, :3], rays[:, 3:], None,
                               near=self.near, far=self.far, num_samples=self.num_samples,
                               background=jnp.asarray(self.background), stratified=False,
                               hierarchical_samples=self.hierarchical_samples)
      return out['rgb']

    def predict(params, rays):
      n = rays.shape[0]
      if n <= self.chunk:
        return render_rgb(params, rays)
      pad = -n % self.chunk
      chunks = jnp.pad(rays, ((0, pad), (0, 0))).reshape(-1, self.chunk, 6)
      return jax.lax.map(lambda r: render_rgb(params, r), chunks).reshape(-1, 3)[:n]
    return predict

  def route(self, points: jax.Array) -> jax.Array:
    """Hard routing of sample points [N, 6] to the expert of their ground cell."""
    xmin, xmax, ymin, ymax = self.bounds
    rows, cols = self.grid
    col = jnp.clip(jnp.floor((points[:, 0] - xmin) / (xmax - xmin) * cols), 0, cols - 1)
    row = jnp.clip(jnp.floor((points[:, 1] - ymin) / (ymax - ymin) * rows), 0, rows - 1)
    return jax.nn.one_hot((row * cols + col).astype(jnp.int32), self.num_tasks)

  def to_signal(self, y: jax.Array) -> jax.Array:
    return y.reshape(self.query_views, *self.image_shape, 3)

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return rgb_metrics(pred, target)

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {}

  def flythrough_rays(self, signal: SceneSignal, frames: int = 24) -> FlythroughRays:
    """A circle flown around the block: `frames` views of `image_shape` (for a GIF)."""
    from mclnf_jax.data.city import orbit_cameras
    from mclnf_jax.data.scene import camera_rays
    scene = signal.heldout if signal.heldout is not None else signal.context
    anchor = scene.c2w[:, :3, 3]
    altitude = float(np.median(anchor[:, 2]) - (scene.ground_z or 0.0))
    c2w = orbit_cameras(self.bounds, frames, altitude, tilt_deg=35.0)
    c2w[:, 2, 3] += scene.ground_z or 0.0
    origins, dirs = camera_rays(c2w, *self.image_shape, *scene.focal, *scene.principal)
    rays = np.concatenate([origins, dirs], -1).reshape(-1, 6).astype(np.float32)
    return FlythroughRays(rays, tuple(self.image_shape))

  def visuals(self, truths, recons, scores) -> list[Visual]:
    """Held-out views rendered by each method beside ground truth: a grid and a GIF per
    block (as video frames)."""
    return frame_visuals(truths, recons, scores)
