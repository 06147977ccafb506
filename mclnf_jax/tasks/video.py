"""Video [F, H, W, 3] in [0, 1]: (t, row, col) -> RGB; tasks are runs of frames.

Metrics are PSNR over the clip and SSIM per frame, averaged; visuals are a frame grid
(ground truth above each method) and a GIF of reconstructions beside ground truth.
"""
import dataclasses

import jax
import numpy as np

from mclnf_jax.tasks.grid import GridTasks
from mclnf_jax.tasks.image import rgb_metrics


@dataclasses.dataclass(frozen=True)
class VideoTasks(GridTasks):

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return rgb_metrics(pred, target)

  def save_visuals(self, path_stem: str, truths, recons, scores) -> None:
    save_frame_grids_and_gifs(path_stem, truths, recons, scores)


def save_frame_grids_and_gifs(path_stem: str, truths, recons, scores) -> None:
  """Per signal [F, H, W, 3]: a PNG with one row per frame (ground truth, then each
  method; scores under the first row) and a GIF of them side by side."""
  from mclnf_jax import report
  for i, (truth, recon, score) in enumerate(zip(truths, recons, scores)):
    rows = [{m: r[f] for m, r in recon.items()} for f in range(len(truth))]
    report.image_grid(f'{path_stem}_{i}.png', list(truth), rows,
                      [score if f == 0 else {} for f in range(len(truth))])
    write_gif(f'{path_stem}_{i}.gif', truth, recon)


def write_gif(path: str, truth: np.ndarray, recon: dict) -> None:
  """Frames of ground truth and each reconstruction side by side, written atomically."""
  import os
  from PIL import Image
  panels = [truth] + [np.clip(r, 0, 1) for r in recon.values()]
  frames = [Image.fromarray((np.concatenate([p[f] for p in panels], axis=1) * 255)
                            .round().astype(np.uint8)) for f in range(len(truth))]
  tmp = path + '.tmp.gif'
  frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=250, loop=0)
  os.replace(tmp, path)
