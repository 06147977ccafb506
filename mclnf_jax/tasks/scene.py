"""City-scale scenes: posed views -> rays; tasks are ground cells; predictions are rendered.

A signal is a `SceneSignal`: the context views of one block (grouped by the ground cell
they look at, one task per cell, seen in sequence) and optionally held-out views for
evaluation. A prediction is formed by volume rendering the field along each ray; routing
sends each 3D sample point to the expert of the cell under it (Algorithm 1, lines
28-30). Inputs are rays [N, 6] = (origin, unit direction); field inputs are points
[N, 6] = (xyz, unit direction).

Fresh rays every step (Algorithm 1, lines 7 and 22). Each task's context set is a pool:
its cell's rays in an order shuffled once per (seed, block, cell) on the host
(`pool_rays` of them, 0: every ray of the cell). The learners' inner loop (learners/
base.py) fits, at step k, the k-th batch `draw(pool, k, count)`: pool rows [k count,
(k + 1) count) mod M, a sweep through the shuffled pool (every ray once per M / count
steps), with `rays_per_task` rays in meta-training and `tto_rays_per_task` at test time
(first-order and cheap, where meta-training's second-order memory bounds the count).
The meta-loss is taken on `query_rays_per_task` other rays, draw index -1: the pool's
last rows, which the inner loop's first steps never reach. A drawn ray carries a 7th
column, a jitter seed in [0, 1) hashed from the ray and k, from which the predictor takes
stratified sample offsets along it (NeRF eq. 2); rays of 6 columns (metrics, figures)
render at midpoint samples. Everything is a pure function of (seed, block, cell, k), so
reruns, resumed meta-training, scans and fori_loops fit the same rays.
"""
import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np

import mclnf_jax.render as render   # the module (mclnf_jax.render is also an API name)
from mclnf_jax.data.scene import Scene, SceneSignal, views_by_cell
from mclnf_jax.errors import UserError
from mclnf_jax.types import Episode
from mclnf_jax.tasks.image import rgb_metrics
from mclnf_jax.tasks.video import frame_visuals
from mclnf_jax.visuals import FlythroughRays, Visual


def _rays(scene: Scene) -> np.ndarray:
  origins, dirs = scene.rays()
  return np.concatenate([origins, dirs], -1).astype(np.float32)      # [V, H, W, 6]


def pool_rows(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
  """`size` row indices of n in a random order: distinct when size <= n, else every row
  once per shuffled round (the last round cut short)."""
  if size <= n:
    return rng.choice(n, size, replace=False)
  rounds = -(-size // n)
  return np.concatenate([rng.permutation(n) for _ in range(rounds)])[:size]


def jitter_seeds(rays: jax.Array, index) -> jax.Array:
  """A seed in [0, 1) per ray [R, 6], hashed from its 6 values and the draw index."""
  bits = jax.lax.bitcast_convert_type(rays[:, :6].astype(jnp.float32), jnp.uint32)
  h = render.mix32(jnp.broadcast_to(jnp.asarray(index).astype(jnp.uint32), rays.shape[:1])
                   ^ jnp.uint32(0x2545F491))
  for c in range(6):
    h = render.mix32(h ^ bits[:, c])
  return render.to_unit(h)


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
  pool_rays: int = 0               # rays per cell kept for the draws; 0: every ray of it
  query_rays_per_task: int = 0     # rays of each task's meta-loss query set; 0: rays_per_task
  stratified: bool = True          # jittered samples along training rays (else midpoints)

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
    cells = views_by_cell(scene, self.grid, require_all=True)
    per_view = scene.height * scene.width
    size = self.pool_rays or max(len(views) for views in cells) * per_view
    xs, ys = [], []
    for views in cells:
      cell_rays, cell_rgb = rays[views].reshape(-1, 6), rgb[views].reshape(-1, 3)
      pick = pool_rows(rng, len(cell_rays), size)
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

  def batching(self) -> dict:
    """How learners draw each step's rays (the batching fields of `TaskSpec`)."""
    return dict(batch=self.rays_per_task,
                tto_batch=self.tto_rays_per_task or self.rays_per_task,
                query=self.query_rays_per_task or self.rays_per_task, draw=self.draw)

  def draw(self, pool_x: jax.Array, pool_y: jax.Array, index, count: int):
    """The index-th batch of `count` rays of a task's pool [M, 6] (see module doc):
    rows [index count, (index + 1) count) mod M, with a jitter seed column when
    `stratified` ([count, 7]). index -1 is the meta-loss's query set (the last rows)."""
    index = jnp.asarray(index, jnp.int32)
    rows = (index * count + jnp.arange(count, dtype=jnp.int32)) % pool_x.shape[0]
    x, y = pool_x[rows], pool_y[rows]
    if self.stratified:
      x = jnp.concatenate([x[:, :6], jitter_seeds(x, index)[:, None]], -1)
    return x, y

  def predictor(self, apply_fn):
    """Rays [N, 6] -> rendered RGB [N, 3] at midpoint samples; rays [N, 7] (drawn for
    training, see `draw`) at samples jittered by their seed column. In chunks of `chunk`
    rays when N is large."""
    def render_rgb(params, rays):
      jitter = rays[:, 6] if rays.shape[-1] > 6 else None
      out = render.render_rays(apply_fn, params, rays[:, :3], rays[:, 3:6], None,
                               near=self.near, far=self.far, num_samples=self.num_samples,
                               background=jnp.asarray(self.background),
                               stratified=jitter is not None, jitter=jitter,
                               hierarchical_samples=self.hierarchical_samples)
      return out['rgb']

    def predict(params, rays):
      n = rays.shape[0]
      if n <= self.chunk:
        return render_rgb(params, rays)
      pad = -n % self.chunk
      chunks = jnp.pad(rays, ((0, pad), (0, 0))).reshape(-1, self.chunk, rays.shape[-1])
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
