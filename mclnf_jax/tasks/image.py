"""Images [H, W, 3] in [0, 1]: (row, col) -> RGB; PSNR and SSIM; Fig. 3-style grids."""
import dataclasses

import jax
import jax.numpy as jnp

from mclnf_jax import metrics
from mclnf_jax.tasks.grid import GridTasks
from mclnf_jax.visuals import ImageGrid


def rgb_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  """PSNR and SSIM of RGB in [0, 1] (an image, or frames/views averaged for SSIM)."""
  pred = jnp.clip(pred, 0.0, 1.0)
  return {'psnr': metrics.psnr(pred, target), 'ssim': metrics.ssim(pred, target)}


@dataclasses.dataclass(frozen=True)
class ImageTasks(GridTasks):

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return rgb_metrics(pred, target)

  def visuals(self, truths, recons, scores) -> list[ImageGrid]:
    """`reconstructions.png`: a row per image, ground truth beside each method's
    reconstruction, PSNR under each (the paper's Fig. 3)."""
    return [ImageGrid('', list(truths), list(recons), list(scores))]

  def flythrough_rays(self, signal) -> None:
    return None
