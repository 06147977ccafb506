"""Config -> modality: the one place that builds a modality from its config section."""
import ml_collections

from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.data.signals import scene_signals
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import Modality
from mclnf_jax.tasks.audio import AudioTasks
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.tasks.scene import SceneTasks
from mclnf_jax.tasks.video import VideoTasks


def make_modality(config: ml_collections.ConfigDict) -> Modality:
  d, t = config.data, config.tasks
  grid, split = tuple(t.grid), t.split
  if config.modality == 'image':
    return ImageTasks((d.resolution, d.resolution), 3, grid, split)
  if config.modality == 'video':
    return VideoTasks((d.frames, d.resolution, d.resolution), 3, grid, split)
  if config.modality == 'audio':
    return AudioTasks((int(round(d.seconds * SAMPLE_RATE)),), 1, grid, split)
  if config.modality == 'nerf':
    return _scene_tasks(config)
  raise UserError(f'unknown config.modality={config.modality!r}')


def _scene_tasks(config: ml_collections.ConfigDict) -> SceneTasks:
  """Scene tasks in the frame every block shares (bounds and ray range of the data)."""
  first = scene_signals(config)['train'][0].context
  r, s = config.render, config.scene
  grid = tuple(config.tasks.grid)
  if len(grid) != 2:
    raise UserError(f'tasks.grid={grid} must be (rows, cols) of ground cells for scenes')
  return SceneTasks(grid=grid, bounds=tuple(first.bounds), near=first.near, far=first.far,
                    image_shape=(first.height, first.width), query_views=s.heldout_views,
                    rays_per_task=s.rays_per_task, tto_rays_per_task=s.tto_rays_per_task,
                    num_samples=r.num_samples, hierarchical_samples=r.hierarchical_samples,
                    background=tuple(r.background), chunk=r.chunk, seed=config.seed)
