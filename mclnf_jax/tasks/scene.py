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

Cell borders (Mega-NeRF, Turki et al. 2022: overlapping cells, blended experts). Hard
routing sends a sample point near a border to an expert that may never have seen it.
Two options, both fractions of a cell's size (cells on the grid's edge are open
outward, as `route` clamps points outside `bounds` to them):
- `cell_overlap` m > 0: a cell's pool holds its own views' rays and, from every other
  view, the rays whose segment [near, far] (cut at the ground where the scene has one)
  crosses the cell grown by m on each side (`grown_cells`, `crossing_rays`). Each
  expert still renders whole rays (a pixel's colour is the whole ray's), as Mega-NeRF
  trains each submodule on every pixel whose ray meets its grown region; rendering only
  the part of a ray inside the cell would fit it to a colour that other parts form.
  The pool then holds `pool_rays` rays, or with pool_rays = 0 as many as the block's
  context views (every candidate ray at least once); steps and batches are unchanged.
- `blend_overlap` b > 0: `route` gives soft weights (a `fields.experts.Mixture`, at most
  one expert per grown cell holding the point: 4 on a 2-D grid): inverse distance to
  each cell's centre (Mega-NeRF's weights), times a ramp from 1 on the cell to 0 at
  its grown edge (Mega-NeRF cuts at the edge; the ramp keeps the weights continuous),
  normalised to sum 1. A point farther than b from every other cell gets weight
  exactly 1 on its own expert, i.e. hard routing; `experts.routed_apply` then
  evaluates each point with its nonzero-weight experts only.
Both 0 (the default): pools by view and hard routing, as before.

Figures (report time, from each learner's adapted fields through its own `predict`, so
learners stay unchanged): rays of `FIGURE_COLUMNS` = 8 columns (origin, direction, two
zero columns: `figure_columns`) render at midpoint samples to [N, 5] = (rgb, depth,
opacity) instead of rgb. `figure_rays` gives such rays for the first held-out views and
a straight-down view of the block; `figure_visuals` turns every method's renders into
panels of RGB, depth and opacity beside the ground truth and a map of expert routing.
"""
import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np

import mclnf_jax.render as render   # the module (mclnf_jax.render is also an API name)
from mclnf_jax.data.scene import Scene, SceneSignal, view_anchor_xy, views_by_cell
from mclnf_jax.errors import UserError
from mclnf_jax.fields import experts
from mclnf_jax.types import Episode, GroupedPrediction
from mclnf_jax.tasks.image import rgb_metrics
from mclnf_jax.tasks.video import frame_visuals
from mclnf_jax.visuals import FigureRays, FlythroughRays, Panel, PanelGrid, RoutingMap, Visual

FIGURE_COLUMNS = 8      # rays rendered to (rgb, depth, opacity) for figures (see module doc)
FIGURE_VIEWS = 2        # held-out views shown with depth and opacity
TOPDOWN_PIXELS = 64     # side of the straight-down view under the routing map


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


def segment_meets_box(origins: np.ndarray, dirs: np.ndarray, t_near: np.ndarray,
                      t_far: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """[R] bool: does the segment o + t d, t in [t_near, t_far], meet the xy box [lo, hi]
  (bounds may be infinite)? The slab test on x and y (z is not bounded)."""
  t0, t1 = np.asarray(t_near, np.float64).copy(), np.asarray(t_far, np.float64).copy()
  for axis in range(2):
    o, d = origins[:, axis].astype(np.float64), dirs[:, axis].astype(np.float64)
    inside = (o >= lo[axis]) & (o <= hi[axis])
    flat = np.abs(d) < 1e-12
    safe = np.where(flat, 1.0, d)
    ta, tb = (lo[axis] - o) / safe, (hi[axis] - o) / safe
    enter = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb))
    leave = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb))
    t0, t1 = np.maximum(t0, enter), np.minimum(t1, leave)
  return t0 <= t1


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
  cell_overlap: float = 0.0        # pools: + other views' rays crossing the grown cell
  blend_overlap: float = 0.0       # route: blend the experts of grown cells (0: hard)

  in_dim = 6
  out_dim = 4                      # field output: rgb logits + density
  channels = 3                     # prediction: rgb

  def __post_init__(self):
    if not self.cell_overlap >= 0:
      raise UserError(f'scene.cell_overlap={self.cell_overlap} must be >= 0 (a fraction of '
                      'the cell size; 0: pools by view)')
    if not 0 <= self.blend_overlap < 0.5:
      raise UserError(f'scene.blend_overlap={self.blend_overlap} must be in [0, 0.5) (a '
                      'fraction of the cell size; 0: hard routing)')
    if self.blend_overlap > 0:   # the instance's route shadows the hard-routing method
      object.__setattr__(self, 'route', experts.Mixture(self.blended_route,
                                                        self.experts_per_point))

  @property
  def num_tasks(self) -> int:
    return self.grid[0] * self.grid[1]

  @property
  def experts_per_point(self) -> int:
    """Grown cells that can hold one point (overlap < 1/2: two per axis at most)."""
    return (2 if self.grid[0] > 1 else 1) * (2 if self.grid[1] > 1 else 1)

  @property
  def cell_size(self) -> np.ndarray:
    """[2]: a cell's extent in x and y."""
    xmin, xmax, ymin, ymax = self.bounds
    return np.array([(xmax - xmin) / self.grid[1], (ymax - ymin) / self.grid[0]])

  def cell_centres(self) -> np.ndarray:
    """[E, 2]: xy centre of each cell (row-major)."""
    r, c = np.divmod(np.arange(self.num_tasks), self.grid[1])
    corner = np.array([self.bounds[0], self.bounds[2]])
    return corner + (np.stack([c, r], -1) + 0.5) * self.cell_size

  def grown_cells(self, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) [E, 2] xy corners of each cell (row-major) grown by `margin` cell sizes
    on each side; infinite on the grid's outer sides (where `route` clamps)."""
    rows, cols = self.grid
    size = self.cell_size
    r, c = np.divmod(np.arange(rows * cols), cols)
    lo = self.cell_centres() - (0.5 + margin) * size
    hi = lo + (1 + 2 * margin) * size
    lo[c == 0, 0], lo[r == 0, 1] = -np.inf, -np.inf
    hi[c == cols - 1, 0], hi[r == rows - 1, 1] = np.inf, np.inf
    return lo, hi

  def crossing_rays(self, scene: Scene, rays: np.ndarray) -> np.ndarray:
    """[E, R] bool: rays [R, 6] whose segment [near, far], cut where it goes below the
    scene's ground, crosses each cell grown by `cell_overlap`."""
    t_far = np.full(rays.shape[0], self.far, np.float64)
    if scene.ground_z is not None:
      down = rays[:, 5] < 0
      hit = (scene.ground_z - rays[:, 2]) / np.where(down, rays[:, 5], -1.0)
      t_far = np.where(down, np.minimum(t_far, hit), t_far)
    t_near = np.full_like(t_far, self.near)
    lo, hi = self.grown_cells(self.cell_overlap)
    return np.stack([segment_meets_box(rays[:, :3], rays[:, 3:6], t_near, t_far, lo[e], hi[e])
                     for e in range(self.num_tasks)])

  def pool_members(self, scene: Scene, rays: np.ndarray, cells: list) -> list[np.ndarray]:
    """Each cell's candidate rows of rays [V H W, 6]: its own views' rays, then (with
    `cell_overlap`) the other views' rays that cross its grown cell."""
    per_view = scene.height * scene.width
    own = [(np.asarray(views)[:, None] * per_view + np.arange(per_view)).ravel()
           for views in cells]
    if not self.cell_overlap:
      return own
    crossing = self.crossing_rays(scene, rays)
    view = np.arange(rays.shape[0]) // per_view
    return [np.concatenate([rows, np.flatnonzero(crossing[e] & ~np.isin(view, cells[e]))])
            for e, rows in enumerate(own)]

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
    rays, rgb = rays.reshape(-1, 6), rgb.reshape(-1, 3)
    members = self.pool_members(scene, rays, cells)
    size = self.pool_rays or (max(len(views) for views in cells) * per_view
                              if not self.cell_overlap else rays.shape[0])
    xs, ys = [], []
    for rows in members:
      pick = rows[pool_rows(rng, len(rows), size)]
      xs.append(rays[pick])
      ys.append(rgb[pick])
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

  def predictor(self, apply_fn) -> GroupedPrediction:
    """Rays [N, 6] -> rendered RGB [N, 3] at midpoint samples; rays [N, 7] (drawn for
    training, see `draw`) at samples jittered by their seed column; rays [N, 8] (for
    figures, `figure_columns`) -> [N, 5] = (rgb, depth, opacity) at midpoint samples.
    In chunks of `chunk` rays when N is large. A `GroupedPrediction`: ray i reads only
    its own samples, rows [i S, (i + 1) S) of each field call (`render._query`), which
    lets the FIM loss take per-ray scores from layer taps (`fisher.grouped_taps`)."""
    render_rgb = self.renderer(apply_fn)

    def predict(params, rays):
      n, width = rays.shape[0], (5 if rays.shape[-1] == FIGURE_COLUMNS else 3)
      if n <= self.chunk:
        return render_rgb(params, rays)
      pad = -n % self.chunk     # copies of the last ray: zero rays have no direction
      chunks = jnp.pad(rays, ((0, pad), (0, 0)), mode='edge').reshape(-1, self.chunk,
                                                                        rays.shape[-1])
      return jax.lax.map(lambda r: render_rgb(params, r), chunks).reshape(-1, width)[:n]
    return GroupedPrediction(field=apply_fn, over=self.renderer, predict=predict)

  def renderer(self, apply_fn):
    """`predictor`'s prediction over apply_fn for any number of rays at once (no chunks):
    the `over` of the GroupedPrediction."""
    def render_rgb(params, rays):
      jitter = rays[:, 6] if rays.shape[-1] == 7 else None
      out = render.render_rays(apply_fn, params, rays[:, :3], rays[:, 3:6], None,
                               near=self.near, far=self.far, num_samples=self.num_samples,
                               background=jnp.asarray(self.background),
                               stratified=jitter is not None, jitter=jitter,
                               hierarchical_samples=self.hierarchical_samples)
      if rays.shape[-1] == FIGURE_COLUMNS:
        return jnp.concatenate([out['rgb'], out['depth'][:, None], out['acc'][:, None]], -1)
      return out['rgb']
    return render_rgb

  def route(self, points: jax.Array) -> jax.Array:
    """Hard routing of sample points [N, 6] to the expert of their ground cell (with
    `blend_overlap`, each instance's `route` is `blended_route` instead: module doc)."""
    xmin, xmax, ymin, ymax = self.bounds
    rows, cols = self.grid
    col = jnp.clip(jnp.floor((points[:, 0] - xmin) / (xmax - xmin) * cols), 0, cols - 1)
    row = jnp.clip(jnp.floor((points[:, 1] - ymin) / (ymax - ymin) * rows), 0, rows - 1)
    return jax.nn.one_hot((row * cols + col).astype(jnp.int32), self.num_tasks)

  def blended_route(self, points: jax.Array) -> jax.Array:
    """Soft weights [N, E] of sample points [N, 6] (module doc, Mega-NeRF's blending):
    inverse distance to each cell's centre times a ramp from 1 on the cell to 0 at its
    edge grown by `blend_overlap`, normalised; rows sum to 1."""
    lo, hi = (jnp.asarray(a, jnp.float32) for a in self.grown_cells(0.0))
    size = jnp.asarray(self.cell_size, jnp.float32)
    centre = jnp.asarray(self.cell_centres(), jnp.float32)          # [E, 2]
    xy = points[:, None, :2]                                          # [N, 1, 2]
    outside = jnp.maximum(jnp.maximum(lo - xy, xy - hi), 0.0) / size  # [N, E, 2] cells
    ramp = jnp.prod(jnp.clip(1.0 - outside / self.blend_overlap, 0.0, 1.0), -1)
    dist = jnp.linalg.norm((xy - centre) / size, axis=-1)             # [N, E]
    weights = ramp / jnp.maximum(dist, 1e-6)
    total = weights.sum(-1, keepdims=True)
    # A lone expert gets exactly 1 (XLA may divide by multiplying by a reciprocal).
    return jnp.where(weights == total, 1.0, weights / total)

  def to_signal(self, y: jax.Array) -> jax.Array:
    return y.reshape(self.query_views, *self.image_shape, 3)

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return rgb_metrics(pred, target)

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {}

  def flythrough_rays(self, signal: SceneSignal, frames: int = 36) -> FlythroughRays:
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

  # ------------------------------------------------------------------ figures ---

  def figure_columns(self, rays):
    """Rays [N, 6] -> [N, FIGURE_COLUMNS]: rendered to (rgb, depth, opacity) by
    `predictor` (see module doc)."""
    xp = jnp if isinstance(rays, jax.Array) else np
    return xp.concatenate([rays[:, :6], xp.zeros_like(rays[:, :2])], -1)

  def topdown_rays(self, ground_z: float, altitude: float,
                   pixels: int = TOPDOWN_PIXELS) -> np.ndarray:
    """[pixels^2, 6] parallel rays straight down over `bounds` from `altitude` above the
    ground, one per pixel centre, row 0 at y = ymax (north up)."""
    xmin, xmax, ymin, ymax = self.bounds
    x = xmin + (np.arange(pixels) + 0.5) / pixels * (xmax - xmin)
    y = ymax - (np.arange(pixels) + 0.5) / pixels * (ymax - ymin)
    gx, gy = np.meshgrid(x, y)
    origins = np.stack([gx, gy, np.full_like(gx, ground_z + altitude)], -1).reshape(-1, 3)
    dirs = np.broadcast_to(np.array([0.0, 0.0, -1.0]), origins.shape)
    return np.concatenate([origins, dirs], -1).astype(np.float32)

  def figure_rays(self, signal: SceneSignal) -> FigureRays:
    """What the figures render with each adapted field (one call, [N, 8] rays): the
    first `FIGURE_VIEWS` held-out views, then a straight-down view of the block from the
    cameras' height (capped inside `far`). `data`: the views' ground-truth depth where
    the scene has it, the context cameras' xy and the task (cell) each looks at."""
    scene = signal.heldout if signal.heldout is not None else signal.context
    shown = min(FIGURE_VIEWS, self.query_views, scene.num_views)
    views = _rays(scene)[:shown].reshape(-1, 6)
    context = signal.context
    ground = float(context.ground_z or 0.0)
    altitude = float(np.median(context.c2w[:, 2, 3])) - ground
    altitude = min(max(altitude, self.near), 0.95 * self.far)
    top = self.topdown_rays(ground, altitude)
    cells = views_by_cell(context, self.grid, require_all=False)
    task = np.full(context.num_views, -1, np.int32)
    for t, members in enumerate(cells):
      task[np.asarray(members, np.int64)] = t
    data = {'views': np.int32(shown), 'cameras': context.c2w[:, :2, 3].astype(np.float32),
            'camera_task': task,
            'anchors': view_anchor_xy(context.c2w, context.ground_z).astype(np.float32)}
    if scene.depth is not None:
      data['depth'] = np.asarray(scene.depth[:shown], np.float32)
    return FigureRays(self.figure_columns(np.concatenate([views, top])), data)

  def routing_labels(self, pixels: int = TOPDOWN_PIXELS) -> np.ndarray:
    """[pixels, pixels]: the expert `route` sends each ground point to (as `topdown_rays`)."""
    rays = self.topdown_rays(0.0, 0.0, pixels)
    return np.asarray(jnp.argmax(self.route(jnp.asarray(rays)), -1)).reshape(pixels, pixels)

  def figure_visuals(self, index: int, episode: Episode, renders, data, step: int,
                     best: str) -> list[Visual]:
    """Specs of signal `index`'s figures from every method's `renders` ([N, 5] or, from a
    method that is no field, [N, 3]: its predictions on `figure_rays`), that signal's
    query views (`episode.query_y`) and `data` (of `figure_rays`), after `step` test-time
    steps: `_views_<index>` (RGB, depth and opacity of each held-out view per method, its
    PSNR/SSIM and step) and `_routing_<index>` (the expert of each ground cell over
    `best`'s top-down render, context cameras as dots)."""
    h, w = self.image_shape
    shown = int(data['views'])
    truth = np.asarray(self.to_signal(jnp.asarray(episode.query_y)))[:shown]
    gt_depth = data.get('depth')
    split = lambda r: (r[:shown * h * w].reshape(shown, h, w, -1),
                       r[shown * h * w:].reshape(TOPDOWN_PIXELS, TOPDOWN_PIXELS, -1))
    outs = {m: split(np.asarray(r, np.float32)) for m, r in renders.items()}
    depths = [o[0][..., 3] for o, _ in outs.values() if o.shape[-1] == 5]
    if gt_depth is not None:
      depths.append(gt_depth)
    low, high = ((float(np.percentile(np.concatenate([d.ravel() for d in depths]), 1)),
                  float(np.percentile(np.concatenate([d.ravel() for d in depths]), 99)))
                 if depths else (self.near, self.far))
    high = max(high, low + 1e-6)
    depth_panel = lambda d, title, below='': Panel(d, title, below, 'turbo', low, high)
    truth_panels = []
    for v in range(shown):
      truth_panels += [Panel(truth[v], f'view {v + 1} RGB'),
                       depth_panel(gt_depth[v], f'view {v + 1} depth')
                       if gt_depth is not None else Panel(None, f'view {v + 1} depth'),
                       Panel(None, f'view {v + 1} opacity')]
    rows = {}
    for m, (views, _) in outs.items():
      panels = []
      for v in range(shown):
        score = {k: float(x) for k, x in self.metrics(jnp.asarray(views[v, ..., :3]),
                                                      jnp.asarray(truth[v])).items()}
        below = f"{score['psnr']:.2f} dB, SSIM {score['ssim']:.3f}, step {step}"
        has = views.shape[-1] == 5
        panels += [Panel(views[v, ..., :3], f'view {v + 1} RGB', below),
                   depth_panel(views[v, ..., 3], f'view {v + 1} depth', f'step {step}')
                   if has else Panel(None, f'view {v + 1} depth'),
                   Panel(views[v, ..., 4], f'view {v + 1} opacity', f'step {step}', 'gray')
                   if has else Panel(None, f'view {v + 1} opacity')]
      rows[m] = panels
    grid = PanelGrid(f'_views_{index}', truth_panels, rows,
                     title=f'Held-out views after {step} test-time steps: RGB, depth '
                           f'(turbo, {low:.2f} to {high:.2f} scene units) and opacity')
    top = outs[best][1][..., :3] if best in outs else None
    routing = RoutingMap(f'_routing_{index}', self.routing_labels(),
                         tuple(float(b) for b in self.bounds), top,
                         best if top is not None else '', step,
                         np.asarray(data['cameras']), np.asarray(data['camera_task']),
                         np.asarray(data['anchors']),
                         title=f'Expert routing: {self.grid[0]}x{self.grid[1]} ground cells, '
                               'one expert each')
    return [grid, routing]
