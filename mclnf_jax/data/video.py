"""Video datasets as float32 [N, F, R, R, 3] clips in [0, 1]: `load_video`.

Formats (`cfg.name`), for your own data:
  * 'video_folder': the clips under `cfg.root`, each either a .mp4 file
    (decoded with PyAV) or a folder of frame images, searched recursively (see
    `voxceleb2`). If `cfg.root` holds both a `train/` and a `test/` folder,
    each split reads its own; otherwise, in sorted path order, the last
    max(1, N // 10) clips are 'test', the rest 'train'.
  * 'embedded': a moving camera filmed over the natural images inside the
    scikit-image wheel (see `embedded_video`); no download, no cache.

Dataset presets:
  * 'voxceleb2': 'video_folder' always split by the last tenth.

`cfg.frames` = F kept frames, `cfg.frame_stride` = frames skipped between two
kept frames (0 = consecutive), so a clip spans (F - 1) * (stride + 1) + 1
frames. `cfg.num_signals` > 0 keeps that many clips (embedded: the first ones;
folders: drawn without replacement by `cfg.seed`, in sorted order); 0 keeps
the whole split.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from mclnf_jax.data import common
from mclnf_jax.data import embedded_video
from mclnf_jax.data import voxceleb2

FORMATS = {'embedded': embedded_video.load_clips, 'video_folder': voxceleb2.load_folder_clips}
PRESETS = {'voxceleb2': voxceleb2.load_clips}
_LOADERS = {**FORMATS, **PRESETS}


@dataclasses.dataclass(frozen=True)
class VideoRequest:
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


def _parse(cfg: ml_collections.ConfigDict, split: str) -> VideoRequest:
  """Checks the config fields and the split; raises UserError on bad values."""
  name, root = common.name_and_root(cfg, split, tuple(_LOADERS), 'video')
  return VideoRequest(name=name, root=root, split=split,
                      frames=common.int_field(cfg, 'frames', minimum=1),
                      resolution=common.int_field(cfg, 'resolution', minimum=1),
                      frame_stride=common.int_field(cfg, 'frame_stride', minimum=0),
                      num_signals=common.int_field(cfg, 'num_signals', minimum=0),
                      seed=common.int_field(cfg, 'seed', minimum=0))
