"""Video datasets as float32 [N, F, R, R, 3] clips in [0, 1]: `load_video`.

Datasets (`cfg.name`):
  * 'embedded': a moving camera (pan, zoom, slight rotation) filmed over the
    natural images inside the scikit-image wheel, so pixels are real and
    consecutive frames are strongly correlated, as in talking-head video. No
    download, no cache: clips are rendered with NumPy/skimage in seconds. Source
    images are split: `TEST_SOURCES` (coffee, retina, coins, gravel) are held
    out for 'test', the other 16 make 'train'. Clip i films source i mod S with
    a camera path drawn from (seed, split, i); a split has
    `CLIPS_PER_SOURCE` * S clips.
  * 'voxceleb2': the clips under `cfg.root`, each either a .mp4 file (decoded
    with PyAV) or a folder of frame images (.jpg/.jpeg/.png/.bmp, in sorted name
    order), searched recursively. In sorted path order the last max(1, N // 10)
    clips are 'test', the rest 'train'. Frames are taken from the clip start,
    centre-cropped to a square and resized (antialiased bicubic).

`cfg.frames` = F kept frames, `cfg.frame_stride` = frames skipped between two
kept frames (0 = consecutive), so a clip spans (F - 1) * (stride + 1) + 1
frames. `cfg.num_signals` > 0 keeps that many clips (embedded: the first ones;
voxceleb2: drawn without replacement by `cfg.seed`, in sorted order); 0 keeps
the whole split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import dataclasses
import functools
import pathlib

import ml_collections
import numpy as np
from PIL import Image
import skimage.data
import skimage.transform

from mclnf_jax.data import common
from mclnf_jax.errors import UserError

SPLITS = ('train', 'test')
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
FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
VIDEO_SUFFIXES = ('.mp4',)
_SPLIT_SALT = {'train': 0, 'test': 1}
# Camera path ranges, per raw (unskipped) frame.
_WINDOW = (0.45, 0.85)  # Window side as a fraction of the image's short side.
_PAN = (0.01, 0.04)  # Pan speed as a fraction of the window side.
_ZOOM = 0.03  # Max |log zoom|.
_TILT = np.deg2rad(6.0)  # Max |initial angle|.
_SPIN = np.deg2rad(1.0)  # Max |angular speed|.


@dataclasses.dataclass(frozen=True)
class _Request:
  """The validated fields of the data config, plus the split."""
  name: str
  root: str
  split: str
  frames: int
  resolution: int
  frame_stride: int
  num_signals: int
  seed: int

  @property
  def span(self) -> int:
    """Raw frames covered by one clip."""
    return (self.frames - 1) * (self.frame_stride + 1) + 1


def load_video(cfg: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """Loads `split` of `cfg.name` as float32 [N, F, R, R, 3] in [0, 1]."""
  request = _parse(cfg, split)
  count, clips = _LOADERS[request.name](request)
  r = request.resolution
  out = np.empty((count, request.frames, r, r, 3), np.float32)
  for i, clip in enumerate(clips):
    out[i] = clip
  return out


def _parse(cfg: ml_collections.ConfigDict, split: str) -> _Request:
  """Checks the config fields and the split; raises UserError on bad values."""
  name, root = common.name_and_root(cfg, split, tuple(_LOADERS), 'video')
  return _Request(name=name,
                  root=root,
                  split=split,
                  frames=common.int_field(cfg, 'frames', minimum=1),
                  resolution=common.int_field(cfg, 'resolution', minimum=1),
                  frame_stride=common.int_field(cfg, 'frame_stride', minimum=0),
                  num_signals=common.int_field(cfg, 'num_signals', minimum=0),
                  seed=common.int_field(cfg, 'seed', minimum=0))








# ----------------------------------------------------------------- embedded --


def _load_embedded(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
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
def source_image(name: str) -> np.ndarray:
  """A bundled scikit-image picture as float32 [H, W, 3] in [0, 1]."""
  image = getattr(skimage.data, name)()
  if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity).
    image = image[0]
  image = np.asarray(image, np.float32)
  if image.max() > 1.0:  # uint8 pictures; `horse` is boolean.
    image = image / 255.0
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.shape[-1] == 4:  # logo: composite RGBA over white.
    alpha = image[..., 3:]
    image = image[..., :3] * alpha + (1.0 - alpha)
  return np.ascontiguousarray(image)


@functools.cache
def _pyramid_level(name: str, level: int) -> np.ndarray:
  """The source halved `level` times with antialiasing (float32 [H', W', 3])."""
  image = source_image(name)
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
                request: _Request) -> np.ndarray:
  """Films a camera path over source `name`: float32 [F, R, R, 3] in [0, 1]."""
  shape = source_image(name).shape[:2]
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


# ---------------------------------------------------------------- voxceleb2 --


def _load_voxceleb2(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """Reads the split's clips (mp4 files or frame folders) under `root`."""
  clips = split_clips(find_clips(request.root), request.split)
  chosen = [
      clips[int(i)]
      for i in common.choose_indices(len(clips), request.num_signals, request.seed)
  ]

  def frames() -> Iterator[np.ndarray]:
    for path in chosen:
      raw = read_clip(path, request.span)[::request.frame_stride + 1]
      clip = np.stack([resize_square(f, request.resolution) for f in raw])
      yield clip.astype(np.float32) / 255.0  # [F, R, R, 3]

  return len(chosen), frames()


def find_clips(root: str) -> list[pathlib.Path]:
  """Sorted .mp4 files and frame folders under `root`; errors if none."""
  if not root:
    raise UserError('voxceleb2 needs a folder: pass --config.data.root=<folder '
                    'of .mp4 clips or frame folders>')
  folder = pathlib.Path(root)
  if not folder.is_dir():
    raise UserError(
        f'video folder {root} does not exist: pass '
        '--config.data.root=<folder of .mp4 clips or frame folders>')
  clips = set()
  for path in folder.rglob('*'):
    suffix = path.suffix.lower()
    if path.is_file() and suffix in VIDEO_SUFFIXES:
      clips.add(path)
    elif path.is_file() and suffix in FRAME_SUFFIXES:
      clips.add(path.parent)
  if not clips:
    raise UserError(f'video folder {root} has no .mp4 files or frame folders: '
                    'add clips or point --config.data.root elsewhere')
  return sorted(clips)


def split_clips(clips: list[pathlib.Path], split: str) -> list[pathlib.Path]:
  """Last max(1, N // 10) sorted clips are 'test', the rest 'train'."""
  return common.split_last_tenth(clips, split, 'video clips')


def read_clip(path: pathlib.Path, count: int) -> list[np.ndarray]:
  """The first `count` frames of a clip as uint8 [H, W, 3], all one size."""
  if path.is_dir():
    frames = _read_frame_folder(path, count)
  else:
    frames = _read_mp4(path, count)
  if len(frames) < count:
    raise UserError(
        f'clip {path} has {len(frames)} frames but {count} are '
        'needed: remove it or lower --config.data.frames/frame_stride')
  return frames


def _read_frame_folder(folder: pathlib.Path, count: int) -> list[np.ndarray]:
  """Decodes the first `count` frame images; checks every frame's size."""
  files = sorted(p for p in folder.iterdir()
                 if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
  sizes = {p: _image_size(p) for p in files}
  if len(set(sizes.values())) > 1:
    raise UserError(f'frame folder {folder} mixes frame sizes '
                    f'{sorted(set(sizes.values()))}: make its frames one size')
  return [_read_image(p) for p in files[:count]]


def _image_size(path: pathlib.Path) -> tuple[int, int]:
  """(width, height) from the image header; names the file if unreadable."""
  try:
    with Image.open(path) as image:
      return image.size
  except (OSError, SyntaxError) as e:
    raise UserError(f'cannot read frame image {path} ({e}): replace or remove '
                    'it') from e


def _read_image(path: pathlib.Path) -> np.ndarray:
  """Decodes one frame image to uint8 [H, W, 3]; names the file on failure."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, SyntaxError) as e:
    raise UserError(f'cannot read frame image {path} ({e}): replace or remove '
                    'it') from e


def _read_mp4(path: pathlib.Path, count: int) -> list[np.ndarray]:
  """Decodes up to the first `count` video frames with PyAV."""
  av = _import_av()
  frames = []
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise UserError(f'media file {path} has no video stream: replace or '
                        'remove it')
      for frame in container.decode(video=0):
        frames.append(frame.to_ndarray(format='rgb24'))
        if len(frames) == count:
          break
  except (av.FFmpegError, OSError) as e:
    raise UserError(f'cannot decode media file {path} ({e}): replace or remove '
                    'it') from e
  if len({f.shape for f in frames}) > 1:
    raise UserError(f'media file {path} changes frame size mid-clip: re-encode '
                    'it at one size')
  return frames


def _import_av():
  """PyAV, needed only for .mp4 clips."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError('decoding .mp4 clips needs PyAV: pip install av (or '
                    'extract frames into one folder per clip)') from e
  return av


def resize_square(frame: np.ndarray, resolution: int) -> np.ndarray:
  """Centre square crop of uint8 [H, W, 3], antialiased bicubic to [R, R, 3]."""
  square = np.ascontiguousarray(common.center_square(frame))
  if square.shape[0] == resolution:
    return square
  resized = Image.fromarray(square).resize(
      (resolution, resolution), Image.Resampling.BICUBIC)
  return np.asarray(resized)


_LOADERS: dict[str, Callable[[_Request], tuple[int, Iterator[np.ndarray]]]] = {
    'embedded': _load_embedded,
    'voxceleb2': _load_voxceleb2,
}
