"""Embedded video: a moving camera filmed over the photos inside scikit-image.

A camera (pan, zoom, slight rotation) moves over a natural image, so pixels are
real and consecutive frames are strongly correlated, as in talking-head video.
No download, no cache: clips are rendered with NumPy/skimage in seconds. Source
images are split: `TEST_SOURCES` (coffee, retina, coins, gravel) are held out
for 'test', the other 16 make 'train'. Clip i films source i mod S with a camera
path drawn from (seed, split, i); a split has `CLIPS_PER_SOURCE` * S clips.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
import skimage.transform

from mclnf_jax.data import skimage_photos

if TYPE_CHECKING:
  from mclnf_jax.data.video import VideoRequest

# Images shipped inside the scikit-image 0.26 wheel (no download).
COLOR_SOURCES = ('astronaut', 'chelsea', 'coffee', 'rocket',
                 'hubble_deep_field', 'immunohistochemistry', 'retina',
                 'colorwheel', 'logo', 'stereo_motorcycle')
GRAY_SOURCES = ('camera', 'brick', 'grass', 'gravel', 'moon', 'coins', 'clock',
                'page', 'horse', 'text')
TEST_SOURCES = ('coffee', 'retina', 'coins', 'gravel')
TRAIN_SOURCES = tuple(
    s for s in COLOR_SOURCES + GRAY_SOURCES if s not in TEST_SOURCES)
CLIPS_PER_SOURCE = 32
_SPLIT_SALT = {'train': 0, 'test': 1}
# Camera path ranges, per raw (unskipped) frame.
_WINDOW = (0.45, 0.85)  # Window side as a fraction of the image's short side.
_PAN = (0.01, 0.04)  # Pan speed as a fraction of the window side.
_ZOOM = 0.03  # Max |log zoom|.
_TILT = np.deg2rad(6.0)  # Max |initial angle|.
_SPIN = np.deg2rad(1.0)  # Max |angular speed|.


def load_clips(request: VideoRequest) -> tuple[int, Iterator[np.ndarray]]:
  """Renders the first clips of the split, each from its own camera path."""
  sources = TEST_SOURCES if request.split == 'test' else TRAIN_SOURCES
  total = CLIPS_PER_SOURCE * len(sources)
  count = min(request.num_signals or total, total)

  def clips() -> Iterator[np.ndarray]:
    for i in range(count):
      rng = np.random.default_rng((request.seed, _SPLIT_SALT[request.split], i))
      yield render_clip(sources[i % len(sources)], rng, request)

  return count, clips()


@functools.cache
def _pyramid_level(name: str, level: int) -> np.ndarray:
  """The source halved `level` times with antialiasing (float32 [H', W', 3])."""
  image = skimage_photos.photo(name)
  if level == 0:
    return image
  reduced = skimage.transform.pyramid_reduce(
      image, downscale=2**level, channel_axis=-1)
  return reduced.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _CameraPath:
  """A camera window's centre (x, y), side, angle at frame 0, and speeds."""
  center: np.ndarray  # [2] source pixels (x, y).
  velocity: np.ndarray  # [2] source pixels per raw frame.
  side: float  # Source pixels.
  log_zoom: float  # Per raw frame.
  angle: float  # Radians.
  spin: float  # Radians per raw frame.


def camera_path(shape: tuple[int, int],
                rng: np.random.Generator) -> _CameraPath:
  """Draws a pan/zoom/rotation path for an image of `shape` = (H, W)."""
  height, width = shape
  side = rng.uniform(*_WINDOW) * min(height, width)
  heading = rng.uniform(0.0, 2.0 * np.pi)
  speed = rng.uniform(*_PAN) * side
  center = np.array([
      rng.uniform(0.5 * side, width - 0.5 * side),
      rng.uniform(0.5 * side, height - 0.5 * side)
  ])
  velocity = speed * np.array([np.cos(heading), np.sin(heading)])
  return _CameraPath(
      center=center,
      velocity=velocity,
      side=side,
      log_zoom=rng.uniform(-_ZOOM, _ZOOM),
      angle=rng.uniform(-_TILT, _TILT),
      spin=rng.uniform(-_SPIN, _SPIN))


def window_at(path: _CameraPath, t: int,
              shape: tuple[int, int]) -> tuple[np.ndarray, float, float]:
  """Centre, side and angle at raw frame `t`, kept inside the image."""
  height, width = shape
  angle = path.angle + path.spin * t
  spread = abs(np.cos(angle)) + abs(np.sin(angle))  # Rotated box / side.
  side = min(path.side * np.exp(path.log_zoom * t), min(height, width) / spread)
  half = 0.5 * side * spread
  center = path.center + path.velocity * t
  center = np.clip(center, [half, half], [width - half, height - half])
  return center, side, angle


def render_clip(name: str, rng: np.random.Generator,
                request: VideoRequest) -> np.ndarray:
  """Films a camera path over source `name`: float32 [F, R, R, 3] in [0, 1]."""
  shape = skimage_photos.photo(name).shape[:2]
  path = camera_path(shape, rng)
  frames = []
  for f in range(request.frames):
    center, side, angle = window_at(path, f * (request.frame_stride + 1), shape)
    frames.append(_render_window(name, center, side, angle, request.resolution))
  return np.clip(np.stack(frames), 0.0, 1.0)


def _render_window(name: str, center: np.ndarray, side: float, angle: float,
                   resolution: int) -> np.ndarray:
  """Samples a rotated square window of the source: float32 [R, R, 3]."""
  scale = side / resolution  # Source pixels per output pixel.
  level = max(0, int(np.floor(np.log2(scale)))) if scale > 1 else 0
  image = _pyramid_level(name, level)
  factor = 2.0**level
  scale, center = scale / factor, center / factor
  cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
  mid = 0.5 * (resolution - 1)
  # Output pixel (x, y) -> source (x, y): rotate+scale about the window centre.
  matrix = np.array([[cos, -sin, center[0] - 0.5 - (cos - sin) * mid],
                     [sin, cos, center[1] - 0.5 - (sin + cos) * mid],
                     [0.0, 0.0, 1.0]])
  return skimage.transform.warp(
      image,
      skimage.transform.AffineTransform(matrix=matrix),
      output_shape=(resolution, resolution),
      order=1,
      mode='reflect',
      preserve_range=True).astype(np.float32)
