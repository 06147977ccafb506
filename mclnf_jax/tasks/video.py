"""Video [F, H, W, 3] in [0, 1]: (t, row, col) -> RGB; tasks are runs of frames.

Metrics are PSNR over the clip and SSIM per frame, averaged; visuals are a frame grid
(a row per frame: ground truth, then each method) and a labelled GIF of the same panels.
"""
import dataclasses

import jax
import numpy as np

from mclnf_jax.tasks.grid import GridTasks
from mclnf_jax.tasks.image import rgb_metrics
from mclnf_jax.visuals import Animation, ImageGrid, Visual


@dataclasses.dataclass(frozen=True)
class VideoTasks(GridTasks):

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return rgb_metrics(pred, target)

  def visuals(self, truths, recons, scores) -> list[Visual]:
    return frame_visuals(truths, recons, scores)

  def flythrough_rays(self, signal) -> None:
    return None


def frame_visuals(truths, recons, scores) -> list[Visual]:
  """Per signal i of frames [F, H, W, 3]: `reconstructions_<i>.png` with one row per frame
  (ground truth, then each method; scores under the first row) and `reconstructions_<i>.gif`
  of them side by side, in the same order, each panel labelled."""
  visuals = []
  for i, (truth, recon, score) in enumerate(zip(truths, recons, scores)):
    rows = [{m: r[f] for m, r in recon.items()} for f in range(len(truth))]
    visuals.append(ImageGrid(f'_{i}', list(truth), rows,
                             [score if f == 0 else {} for f in range(len(truth))]))
    visuals.append(Animation(f'_{i}', np.asarray(truth), dict(recon)))
  return visuals
