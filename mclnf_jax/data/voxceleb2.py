"""Video folders: .mp4 clips (decoded with PyAV) or frame folders.

The reader of the 'video_folder' format and of its 'voxceleb2' preset: the clips
under `root`, each either a .mp4 file or a folder of frame images
(.jpg/.jpeg/.png/.bmp, in sorted name order), searched recursively and sorted
by path. 'video_folder' reads root/train and root/test when `root` holds both,
else (and 'voxceleb2' always) the last max(1, N // 10) clips are 'test', the
rest 'train'. Frames are taken from the clip start, centre-cropped to a square
and resized (antialiased bicubic).
"""

from __future__ import annotations

from collections.abc import Iterator
import pathlib
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mclnf_jax.data import common
from mclnf_jax.errors import UserError

if TYPE_CHECKING:
  from mclnf_jax.data.video import VideoRequest

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
VIDEO_SUFFIXES = ('.mp4',)


def load_folder_clips(request: VideoRequest) -> tuple[int, Iterator[np.ndarray]]:
  """'video_folder': train/ and test/ folders when both exist, else the last tenth."""
  return load_clips(request, rule='auto')


def load_clips(request: VideoRequest,
               rule: str = 'last_tenth') -> tuple[int, Iterator[np.ndarray]]:
  """Reads the split's clips (mp4 files or frame folders) under `root` by split `rule`
  (see common.SPLIT_RULES; 'last_tenth' is the 'voxceleb2' preset)."""
  clips = split_clips(find_clips(request.root), request.split, request.root, rule)
  chosen = [
      clips[int(i)]
      for i in common.choose_indices(len(clips), request.num_signals, request.seed)
  ]

  def frames() -> Iterator[np.ndarray]:
    for path in chosen:
      raw = read_clip(path, request.span)[::request.frame_stride + 1]
      clip = np.stack([common.resize_center_square(f, request.resolution) for f in raw])
      yield clip.astype(np.float32) / 255.0  # [F, R, R, 3]

  return len(chosen), frames()


def find_clips(root: str) -> list[pathlib.Path]:
  """Sorted .mp4 files and frame folders under `root`; errors if none."""
  files = common.files_under(root, VIDEO_SUFFIXES + FRAME_SUFFIXES, 'video',
                             '.mp4 files or frame folders')
  return sorted({p if p.suffix.lower() in VIDEO_SUFFIXES else p.parent for p in files})


def split_clips(clips: list[pathlib.Path], split: str, root: str = '',
                rule: str = 'last_tenth') -> list[pathlib.Path]:
  """The clips of `split` by `rule`: 'last_tenth' (the last max(1, N // 10) sorted clips
  are 'test') or 'auto' (root/train and root/test when both exist)."""
  return common.split_folder_items(root, clips, split, 'video clips', rule)


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
  return _open_frame(path, lambda image: image.size)


def _read_image(path: pathlib.Path) -> np.ndarray:
  """Decodes one frame image to uint8 [H, W, 3]; names the file on failure."""
  return _open_frame(path, lambda image: np.asarray(image.convert('RGB')))


def _open_frame(path: pathlib.Path, read):
  """`read(image)` of the opened frame image; a one-line UserError if unreadable."""
  try:
    with Image.open(path) as image:
      return read(image)
  except (OSError, SyntaxError) as e:
    raise UserError(f'cannot read frame image {path} ({common.one_line(e)}): replace '
                    'or remove it') from e


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
    raise UserError(f'cannot decode media file {path} ({common.one_line(e)}): replace '
                    'or remove it') from e
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
