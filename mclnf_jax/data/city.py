"""A procedural city: drone views of generated blocks, the offline stand-in for MatrixCity.

Like MatrixCity's aerial blocks (paper section 5.5): each block (see `city_block`) is
filmed by drone cameras flying over each cell of a 2x2 grid looking down at an angle,
and rendered exactly, with depth. Everything is deterministic per seed.
"""

from __future__ import annotations

import numpy as np

from mclnf_jax.data.city_block import Block, make_block, render_views
from mclnf_jax.data.scene import Bounds, Scene, focal_from_angle


# ---------------------------------------------------------------- cameras


def _look_c2w(position: np.ndarray, forward: np.ndarray, yaw: np.ndarray) -> np.ndarray:
  """c2w [N, 4, 4] (OpenGL) looking along unit forward [N, 3], no roll.

  Right = (sin yaw, -cos yaw, 0) is horizontal and perpendicular to the forward's
  azimuth, so the frame stays defined when looking straight down.
  """
  right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)   # [N, 3]
  up = np.cross(right, forward)
  c2w = np.tile(np.eye(4), (len(position), 1, 1))
  c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = right, up, -forward
  c2w[:, :3, 3] = position
  return c2w.astype(np.float32)


def _cell_cameras(bounds: Bounds, grid: tuple[int, int], views_per_cell: int,
                  altitude: np.ndarray, tilt_deg: np.ndarray,
                  rng: np.random.Generator, margin: float = 0.1) -> np.ndarray:
  """Cameras whose optical axes hit the ground (z = 0) inside each cell, row-major."""
  xmin, xmax, ymin, ymax = bounds
  rows, cols = grid
  cw, ch = (xmax - xmin) / cols, (ymax - ymin) / rows
  targets = []
  for r in range(rows):
    for c in range(cols):
      lo = np.array([xmin + (c + margin) * cw, ymin + (r + margin) * ch])
      hi = np.array([xmin + (c + 1 - margin) * cw, ymin + (r + 1 - margin) * ch])
      targets.append(rng.uniform(lo, hi, (views_per_cell, 2)))
  target = np.concatenate(targets)                                  # [N, 2]
  n = len(target)
  # Heading towards the block centre (+-60 degrees), so views see the city, not sky.
  yaw = np.arctan2(-target[:, 1], -target[:, 0]) + rng.uniform(-1, 1, n) * np.pi / 3
  tilt = np.deg2rad(np.broadcast_to(tilt_deg, (n,)))
  forward = np.stack([np.cos(yaw) * np.sin(tilt), np.sin(yaw) * np.sin(tilt),
                      -np.cos(tilt)], -1)                            # [N, 3]
  ground = np.concatenate([target, np.zeros((n, 1))], -1)
  position = ground - forward * (np.broadcast_to(altitude, (n,)) / np.cos(tilt))[:, None]
  return _look_c2w(position, forward, yaw)


def aerial_cameras(bounds: Bounds, grid: tuple[int, int], views_per_cell: int,
                   altitude: float, tilt_deg: float, seed: int) -> np.ndarray:
  """Drone views [C * views_per_cell, 4, 4] over each cell, cell-major order.

  Like MatrixCity's aerial set: every camera flies at `altitude`, looks down at
  `tilt_deg` from the vertical heading roughly towards the block centre, and its
  optical axis meets the ground inside its cell.
  """
  rng = np.random.default_rng([seed, 0])
  return _cell_cameras(bounds, grid, views_per_cell, np.float64(altitude),
                       np.float64(tilt_deg), rng)


def heldout_cameras(bounds: Bounds, grid: tuple[int, int], views_per_cell: int,
                    altitude: float, tilt_deg: float, seed: int) -> np.ndarray:
  """Evaluation views: an independent stream, altitude +-15% and tilt +-5 degrees."""
  rng = np.random.default_rng([seed, 1])
  n = grid[0] * grid[1] * views_per_cell
  alt = altitude * rng.uniform(0.85, 1.15, n)
  tilt = np.clip(tilt_deg + rng.uniform(-5.0, 5.0, n), 0.0, 80.0)
  return _cell_cameras(bounds, grid, views_per_cell, alt, tilt, rng)


# ---------------------------------------------------------------- dataset


def _block_seed(seed: int, index: int) -> int:
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _ray_range(blocks: list[Block], cameras: list[np.ndarray]) -> tuple[float, float]:
  """Dataset-wide (near, far) enclosing every visible surface from every camera.

  The farthest visible point is a ground corner (buildings are lower than cameras
  and inside the square); the nearest is no closer than the camera's clearance.
  """
  far, clearance = 0.0, np.inf
  for block, c2w in zip(blocks, cameras):
    h = block.size / 2
    corners = np.array([[x, y, 0.0] for x in (-h, h) for y in (-h, h)])   # [4, 3]
    pos = c2w[:, :3, 3].astype(np.float64)                                # [N, 3]
    far = max(far, float(np.linalg.norm(pos[:, None] - corners[None], axis=-1).max()))
    top = float(block.box_max[:, 2].max()) if len(block.box_max) else 0.0
    clearance = min(clearance, float(pos[:, 2].min()) - top)
  return max(0.5 * clearance, 1e-2), 1.02 * far


def _scene(block: Block, c2w: np.ndarray, height: int, width: int, fov_deg: float,
           near: float, far: float, name: str) -> Scene:
  f = focal_from_angle(np.deg2rad(fov_deg), width)
  rgb, depth = render_views(block, c2w, height, width, f, f, width / 2, height / 2,
                            far=far)
  return Scene(images=rgb, c2w=c2w, focal=(f, f), principal=(width / 2, height / 2),
               near=near, far=far, bounds=block.bounds, depth=depth, ground_z=0.0,
               name=name)


def make_city_dataset(
    num_blocks: int = 10, seed: int = 0, height: int = 32, width: int = 32,
    views_per_cell: int = 8, heldout_views_per_cell: int = 2,
    grid: tuple[int, int] = (2, 2), *, size: float = 2.0, n_buildings: int = 12,
    altitude: float = 1.5, tilt_deg: float = 30.0, fov_deg: float = 60.0,
) -> tuple[list[Scene], list[Scene], list[Scene]]:
  """(train_scenes, test_scenes, test_heldout): 70% / 30% of blocks, as the paper.

  test_heldout[i] holds evaluation views of the block of test_scenes[i]. All scenes
  share one (near, far) so a jitted renderer compiles once.
  """
  blocks = [make_block(_block_seed(seed, i), size=size, n_buildings=n_buildings)
            for i in range(num_blocks)]
  cams = [aerial_cameras(b.bounds, grid, views_per_cell, altitude, tilt_deg,
                         _block_seed(seed, i)) for i, b in enumerate(blocks)]
  n_train = _num_train(num_blocks)
  held = [heldout_cameras(b.bounds, grid, heldout_views_per_cell, altitude, tilt_deg,
                          _block_seed(seed, i)) for i, b in enumerate(blocks)]
  near, far = _ray_range(blocks + blocks[n_train:], cams + held[n_train:])
  scenes = [_scene(b, c, height, width, fov_deg, near, far, f'city block {i}')
            for i, (b, c) in enumerate(zip(blocks, cams))]
  heldout = [_scene(blocks[i], held[i], height, width, fov_deg, near, far,
                    f'city block {i} (held-out views)')
             for i in range(n_train, num_blocks)]
  return scenes[:n_train], scenes[n_train:], heldout


def _num_train(num_blocks: int) -> int:
  """70% of the blocks (rounded), keeping at least one on each side when possible."""
  n = int(round(0.7 * num_blocks))
  return min(max(n, 1), num_blocks - 1) if num_blocks >= 2 else num_blocks


def orbit_cameras(bounds: Bounds, num_frames: int, altitude: float,
                  tilt_deg: float) -> np.ndarray:
  """A fly-through [num_frames, 4, 4]: one circle around the block centre at `altitude`,
  every camera looking at the centre from `tilt_deg` off the vertical."""
  xmin, xmax, ymin, ymax = bounds
  centre = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2, 0.0])
  radius = altitude * np.tan(np.deg2rad(tilt_deg))
  angle = np.linspace(0, 2 * np.pi, num_frames, endpoint=False)
  position = centre + np.stack([radius * np.cos(angle), radius * np.sin(angle),
                                np.full_like(angle, altitude)], -1)
  forward = centre - position
  forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
  yaw = np.arctan2(forward[:, 1], forward[:, 0])
  return _look_c2w(position, forward, yaw)
