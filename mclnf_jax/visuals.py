"""What a run shows of its signals, as plain data: modalities say it, `report` draws it.

A modality turns the drawn signals into a list of specs (`Modality.visuals`) and says
which rays fly around a scene (`Modality.flythrough_rays`); a scene also says which rays
its figures render with each adapted field (`figure_rays`: held-out views with depth and
opacity, a top-down view) and what to show of those renders (`figure_visuals`:
`PanelGrid`, `RoutingMap`); `mclnf_jax.report.figures` draws any spec to files named
`<stem><suffix>...`. This module holds data types only (no
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
  labels: method -> the text above its panel (default: its display name).
  formats: 'gif' and/or 'mp4' (`<stem><suffix>.mp4`, H.264 through PyAV).
  """
  suffix: str
  truth: np.ndarray | None
  recons: Mapping[str, np.ndarray]
  min_height: int = 128
  frame_ms: int = 250
  labels: Mapping[str, str] | None = None
  formats: tuple[str, ...] = ('gif',)


class Panel(NamedTuple):
  """One image of a `PanelGrid`: RGB [H, W, 3] in [0, 1], or values [H, W] drawn with a
  colour map over [vmin, vmax]; None for an empty cell. `title` above, `below` under."""
  image: np.ndarray | None
  title: str = ''
  below: str = ''
  cmap: str | None = None
  vmin: float = 0.0
  vmax: float = 1.0


class PanelGrid(NamedTuple):
  """`<stem><suffix>.png`: a row of panels for the ground truth, then one per method in
  table order, each panel's title led by the method's display name.

  truth: the ground truth's panels; recons: method -> its panels (as many as `truth`).
  """
  suffix: str
  truth: Sequence[Panel]
  recons: Mapping[str, Sequence[Panel]]
  title: str = ''


class RoutingMap(NamedTuple):
  """`<stem><suffix>.png`: which expert owns each point of the ground, top-down.

  labels: [h, w] expert index of each ground point, row 0 at y = ymax (north up).
  extent: (xmin, xmax, ymin, ymax) the labels cover.
  image: [h, w, 3] in [0, 1] over the same ground (e.g. a top-down render), or None.
  method: whose render `image` is ('' for none); step: its test-time step.
  points: [P, 2] xy of the context cameras; point_labels: [P] the task of each;
  anchors: [P, 2] the ground point each camera looks at (what puts it in a task).
  """
  suffix: str
  labels: np.ndarray
  extent: tuple[float, float, float, float]
  image: np.ndarray | None = None
  method: str = ''
  step: int = 0
  points: np.ndarray | None = None
  point_labels: np.ndarray | None = None
  anchors: np.ndarray | None = None
  title: str = ''


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


Visual = Union[ImageGrid, Animation, AudioClips, PanelGrid, RoutingMap]


class FlythroughRays(NamedTuple):
  """Rays of a camera path around a scene: render them, and frame f is pixels
  [f * H * W, (f + 1) * H * W) in raster order.

  rays: [frames * H * W, 6] (origin, unit direction), float32.
  frame_shape: (H, W) of each frame.
  """
  rays: np.ndarray
  frame_shape: tuple[int, int]


class FigureRays(NamedTuple):
  """Rays a modality's figures render with each adapted field, all in one call
  (`predict(state, rays)`), and what the figures need of the signal besides.

  rays: [N, d] in the modality's own columns (its predictor knows them).
  data: name -> array kept with the renders (e.g. ground-truth depth, camera positions).
  """
  rays: np.ndarray
  data: Mapping[str, np.ndarray]
