"""One block of the procedural city: box buildings on a street grid, and its exact renderer.

A block is a square of ground [-size/2, size/2]^2 at z = 0 (world z-up) with darker
streets and box buildings whose sides carry a window grid. Rendering is exact ray
casting (slab test against every box, nearest hit among boxes and the ground square),
so ground-truth depth comes for free. Everything is deterministic per seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mclnf_jax.data.scene import Bounds, camera_rays

_FACADES = np.array([[0.85, 0.78, 0.64], [0.70, 0.70, 0.72], [0.66, 0.38, 0.30],
                     [0.55, 0.62, 0.70], [0.90, 0.88, 0.82]], np.float32)
_WINDOWS = np.array([[0.10, 0.16, 0.28], [0.95, 0.85, 0.45]], np.float32)
_AMBIENT = 0.45
_RAY_CHUNK = 1 << 15
_EPS = 1e-9


@dataclasses.dataclass(frozen=True, eq=False)
class Block:
  """One city block: B boxes and S streets on the ground square.

  box_min, box_max: [B, 3] corners; facade, roof, window: [B, 3] colours;
  window_period: [B, 2] (horizontal, vertical) spacing of the window grid;
  window_fill: [B, 2] fraction of each period that is glass;
  streets: [S, 3] rows (axis, centre, half_width): axis 0 runs along x at y=centre,
  axis 1 along y at x=centre; light: [3] unit vector towards the sun.
  """
  size: float
  box_min: np.ndarray
  box_max: np.ndarray
  facade: np.ndarray
  roof: np.ndarray
  window: np.ndarray
  window_period: np.ndarray
  window_fill: np.ndarray
  streets: np.ndarray
  ground_colour: np.ndarray
  street_colour: np.ndarray
  sky_colour: np.ndarray
  light: np.ndarray

  @property
  def bounds(self) -> Bounds:
    h = self.size / 2
    return (-h, h, -h, h)


# ---------------------------------------------------------------- block generator


def make_block(seed: int, *, size: float = 2.0, n_buildings: int = 12,
               max_height: float = 0.6) -> Block:
  """A random block: two streets per axis and up to n_buildings non-overlapping boxes."""
  rng = np.random.default_rng(seed)
  streets = _make_streets(rng, size)
  box_min, box_max = _place_boxes(rng, size, streets, n_buildings, max_height)
  b = len(box_min)
  facade = _FACADES[rng.integers(len(_FACADES), size=b)]
  facade = np.clip(facade + rng.uniform(-0.06, 0.06, (b, 3)), 0, 1)
  azimuth, elevation = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(35, 65))
  light = np.array([np.cos(azimuth) * np.cos(elevation),
                    np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
  return Block(
      size=float(size), box_min=box_min, box_max=box_max,
      facade=facade.astype(np.float32),
      roof=np.clip(0.35 + rng.uniform(-0.1, 0.1, (b, 1)) + np.zeros((b, 3)), 0, 1
                   ).astype(np.float32),
      window=_WINDOWS[rng.integers(len(_WINDOWS), size=b)],
      window_period=np.stack([rng.uniform(0.04, 0.08, b) * size,
                              rng.uniform(0.03, 0.06, b) * size], -1),
      window_fill=rng.uniform(0.4, 0.7, (b, 2)),
      streets=streets,
      ground_colour=np.array([0.42, 0.52, 0.36]) + rng.uniform(-0.05, 0.05, 3),
      street_colour=np.array([0.22, 0.22, 0.24]) + rng.uniform(-0.03, 0.03, 3),
      sky_colour=np.array([0.62, 0.76, 0.92]) + rng.uniform(-0.05, 0.05, 3),
      light=light)


def _make_streets(rng: np.random.Generator, size: float) -> np.ndarray:
  """[4, 3] streets (axis, centre, half width): two along x, two along y."""
  rows = []
  for axis in (0, 1):
    for centre in (-size / 4, size / 4):
      rows.append((axis, centre + rng.uniform(-0.05, 0.05) * size,
                   rng.uniform(0.03, 0.05) * size))
  return np.array(rows, dtype=np.float64)


def _place_boxes(rng: np.random.Generator, size: float, streets: np.ndarray,
                 n_buildings: int, max_height: float) -> tuple[np.ndarray, np.ndarray]:
  """Rejection-samples footprints off the streets and apart from each other."""
  lo, hi = [], []
  half = size / 2
  for _ in range(50 * n_buildings):
    if len(lo) == n_buildings:
      break
    w = rng.uniform(0.08, 0.2, 2) * size                           # [2] footprint
    c = rng.uniform(-half + w / 2, half - w / 2)                   # [2] centre
    mn, mx = c - w / 2, c + w / 2
    if _hits_street(mn, mx, streets) or _hits_box(mn, mx, lo, hi, gap=0.02 * size):
      continue
    height = rng.uniform(0.25, 1.0) * max_height
    lo.append(np.array([mn[0], mn[1], 0.0]))
    hi.append(np.array([mx[0], mx[1], height]))
  return np.array(lo).reshape(-1, 3), np.array(hi).reshape(-1, 3)


def _hits_street(mn: np.ndarray, mx: np.ndarray, streets: np.ndarray) -> bool:
  for axis, centre, half_width in streets:
    k = 1 if axis == 0 else 0           # a street along x spans a range of y
    if mn[k] < centre + half_width and mx[k] > centre - half_width:
      return True
  return False


def _hits_box(mn, mx, lo, hi, gap: float) -> bool:
  return any(np.all(mn < h[:2] + gap) and np.all(mx > l[:2] - gap)
             for l, h in zip(lo, hi))


# ---------------------------------------------------------------- exact renderer


def render_views(block: Block, c2w: np.ndarray, height: int, width: int, fx: float,
                 fy: float, cx: float, cy: float, *,
                 far: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
  """Exact renders: (rgb [V,H,W,3] float32 in [0,1], depth [V,H,W] float32).

  Depth is the distance along each unit ray to the nearest surface, `far` where the
  ray sees only sky.
  """
  origins, dirs = camera_rays(c2w, height, width, fx, fy, cx, cy)   # [V, H, W, 3]
  o, d = origins.reshape(-1, 3).astype(np.float64), dirs.reshape(-1, 3).astype(np.float64)
  rgb, depth = np.empty((len(o), 3), np.float32), np.empty(len(o), np.float32)
  for s in range(0, len(o), _RAY_CHUNK):
    sl = slice(s, s + _RAY_CHUNK)
    rgb[sl], depth[sl] = _shade_rays(block, o[sl], d[sl], far)
  return rgb.reshape(dirs.shape), depth.reshape(dirs.shape[:-1])


def _shade_rays(block: Block, o: np.ndarray, d: np.ndarray,
                far: float) -> tuple[np.ndarray, np.ndarray]:
  """Colour [R, 3] and depth [R] of rays o, d [R, 3] (d unit)."""
  t_box, box, axis = _intersect_boxes(block, o, d)                  # [R] each
  t_ground = _intersect_ground(block, o, d)                         # [R]
  on_box = t_box < t_ground
  t = np.minimum(t_box, t_ground)
  hit = np.isfinite(t)
  p = o + np.where(hit, t, 0.0)[:, None] * d                         # [R, 3]

  normal = np.zeros_like(o)
  normal[:, 2] = 1.0
  box_rows = np.flatnonzero(on_box)
  normal[box_rows] = 0.0
  normal[box_rows, axis[box_rows]] = -np.sign(d[box_rows, axis[box_rows]])
  albedo = _ground_albedo(block, p)                                  # [R, 3]
  albedo[box_rows] = _box_albedo(block, p[box_rows], box[box_rows], axis[box_rows])
  shade = _AMBIENT + (1 - _AMBIENT) * np.maximum(normal @ block.light, 0.0)  # [R]
  rgb = np.where(hit[:, None], albedo * shade[:, None], block.sky_colour[None])
  depth = np.where(hit, t, far)
  return np.clip(rgb, 0, 1), depth


def _intersect_boxes(block: Block, o: np.ndarray,
                     d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Slab test against all boxes: nearest entry t [R] (inf if none), box, entry axis."""
  n = len(o)
  if len(block.box_min) == 0:
    return np.full(n, np.inf), np.zeros(n, np.int64), np.zeros(n, np.int64)
  d_safe = np.where(np.abs(d) < _EPS, _EPS, d)
  inv = 1.0 / d_safe                                                 # [R, 3]
  t0 = (block.box_min[None] - o[:, None]) * inv[:, None]             # [R, B, 3]
  t1 = (block.box_max[None] - o[:, None]) * inv[:, None]
  t_in_axes = np.minimum(t0, t1)
  t_in, t_out = t_in_axes.max(-1), np.maximum(t0, t1).min(-1)        # [R, B]
  valid = (t_out >= t_in) & (t_in > _EPS)
  t_in = np.where(valid, t_in, np.inf)
  box = t_in.argmin(-1)                                              # [R]
  rows = np.arange(n)
  axis = t_in_axes[rows, box].argmax(-1)                             # [R]
  return t_in[rows, box], box, axis


def _intersect_ground(block: Block, o: np.ndarray, d: np.ndarray) -> np.ndarray:
  """Distance [R] to the ground square z = 0 (inf if missed or looking up)."""
  down = d[:, 2] < -_EPS
  t = np.where(down, -o[:, 2] / np.where(down, d[:, 2], -1.0), np.inf)
  xy = o[:, :2] + np.where(np.isfinite(t), t, 0.0)[:, None] * d[:, :2]
  inside = np.all(np.abs(xy) <= block.size / 2, axis=-1)
  return np.where(inside & (t > _EPS), t, np.inf)


def _ground_albedo(block: Block, p: np.ndarray) -> np.ndarray:
  """Ground colour [R, 3] at points p [R, 3]: street colour on the strips."""
  on_street = np.zeros(len(p), bool)
  for axis, centre, half_width in block.streets:
    k = 1 if axis == 0 else 0
    on_street |= np.abs(p[:, k] - centre) <= half_width
  return np.where(on_street[:, None], block.street_colour[None],
                  block.ground_colour[None]).astype(np.float64)


def _box_albedo(block: Block, p: np.ndarray, box: np.ndarray,
                axis: np.ndarray) -> np.ndarray:
  """Roof colour on tops, a window grid on facades; p [K, 3], box and axis [K]."""
  horiz = np.where(axis == 0, 1, 0)               # a face normal to x runs along y
  rows = np.arange(len(p))
  u = p[rows, horiz] - block.box_min[box, horiz]                     # [K]
  z = p[:, 2]
  period, fill = block.window_period[box], block.window_fill[box]   # [K, 2]
  fu, fz = np.mod(u / period[:, 0], 1.0), np.mod(z / period[:, 1], 1.0)
  glass = ((np.abs(fu - 0.5) < fill[:, 0] / 2) & (np.abs(fz - 0.5) < fill[:, 1] / 2)
           & (z > period[:, 1]))                  # no windows on the ground floor
  wall = np.where(glass[:, None], block.window[box], block.facade[box])
  return np.where((axis == 2)[:, None], block.roof[box], wall).astype(np.float64)
