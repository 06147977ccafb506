"""What a run shows of its signals, as plain data: modalities say it, `report` draws it.

A modality turns the drawn signals into a list of specs (`Modality.visuals`) and says
which rays fly around a scene (`Modality.flythrough_rays`); `mclnf_jax.report.figures`
draws any spec to files named `<stem><suffix>...`. This module holds data types only (no
matplotlib, PIL or soundfile), so `tasks/` may import it.

Method keys are learner names ('mcl', 'ol', ...); the drawing puts them in the tables'
order and labels them with the paper's names, the same in every figure.
"""
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Union

import numpy as np


class ImageGrid(NamedTuple):
  """`<stem><suffix>.png`: one row per image, ground truth then each method, a score under
  each reconstruction (the paper's Fig. 3).

  truths: one image per row, [H, W, 3] or [H, W] (or [H, W, 1]) in [0, 1].
  recons: one dict per row, method -> image like its truth (absent methods: empty cell).
  scores: one dict per row, method -> number printed under the image ({} for none).
  """
  suffix: str
  truths: Sequence[np.ndarray]
  recons: Sequence[Mapping[str, np.ndarray]]
  scores: Sequence[Mapping[str, float]]


class Animation(NamedTuple):
  """`<stem><suffix>.gif`: ground truth (if any) then each method side by side, in the
  order of `ImageGrid` columns, a label strip with the name above each panel.

  truth: [F, H, W, 3] frames in [0, 1], or None for no ground-truth panel.
  recons: method -> frames like `truth`.
  min_height: panels are scaled up (nearest neighbour, whole multiples) to at least
    this many pixels tall.
  """
  suffix: str
  truth: np.ndarray | None
  recons: Mapping[str, np.ndarray]
  min_height: int = 128
  frame_ms: int = 250


class AudioClips(NamedTuple):
  """`<stem><suffix>_<name>.wav` per clip (`ground_truth`, then each method key) and
  `<stem><suffix>.png`: waveform and spectrogram of each, the score in the title.

  truth: [L] samples in [-1, 1]; recons: method -> [L]; scores: method -> number.
  """
  suffix: str
  rate: int
  truth: np.ndarray
  recons: Mapping[str, np.ndarray]
  scores: Mapping[str, float]
  unit: str = 'dB'


Visual = Union[ImageGrid, Animation, AudioClips]


class FlythroughRays(NamedTuple):
  """Rays of a camera path around a scene: render them, and frame f is pixels
  [f * H * W, (f + 1) * H * W) in raster order.

  rays: [frames * H * W, 6] (origin, unit direction), float32.
  frame_shape: (H, W) of each frame.
  """
  rays: np.ndarray
  frame_shape: tuple[int, int]
