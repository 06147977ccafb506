"""Config -> modality: the one place that builds a modality from its config section.

Your own modality, without changing the package (see examples/sdf2d.py):

    from mclnf_jax.tasks import factory
    factory.register_modality('sdf2d', make_modality=lambda config: Sdf2dTasks(...),
                              load_signals=lambda config, split: signals)

after which `config.modality = 'sdf2d'` runs through the unchanged learners,
meta-training, evaluation and report (`experiment.run`): this module's `make_modality`
calls the registered maker, and `mclnf_jax.data.signals.load_signals` the registered
loader. The modality implements `mclnf_jax.tasks.Modality`;
learners see it only through `tasks.task_spec` (in/out widths, tasks, predictor, route).
"""
from collections.abc import Callable

import ml_collections

from mclnf_jax.data import signals
from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.data.signals import scene_signals
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import Modality
from mclnf_jax.tasks.audio import AudioTasks
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.tasks.scene import SceneTasks
from mclnf_jax.tasks.video import VideoTasks
from mclnf_jax.types import MODALITIES

ModalityMaker = Callable[[ml_collections.ConfigDict], Modality]
_REGISTERED: dict[str, ModalityMaker] = {}


# pylint: disable-next=redefined-outer-name
def register_modality(name: str, make_modality: ModalityMaker,
                      load_signals: signals.SignalLoader) -> None:
  """Adds modality `name` for `config.modality`: `make_modality(config)` builds it (a
  `tasks.Modality`), `load_signals(config, split)` gives a split's signals (see
  `mclnf_jax.data.signals.register_signals`). Registering a name again replaces it; the
  built-in names (image, video, audio, nerf) cannot be replaced."""
  if name in MODALITIES:
    raise UserError(f'modality {name!r} is built in: register another name')
  signals.register_signals(name, load_signals)
  _REGISTERED[name] = make_modality


def modality_names() -> tuple[str, ...]:
  """Every name `config.modality` may take: the built-in ones, then the registered."""
  return tuple(MODALITIES) + tuple(n for n in _REGISTERED if n not in MODALITIES)


def make_modality(config: ml_collections.ConfigDict) -> Modality:
  if config.modality in _REGISTERED:
    return _REGISTERED[config.modality](config)
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
  raise UserError(f'unknown config.modality={config.modality!r}: use one of '
                  f'{", ".join(modality_names())} (or register yours: register_modality)')


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
                    pool_rays=s.pool_rays, query_rays_per_task=s.query_rays_per_task,
                    stratified=s.stratified, cell_overlap=s.cell_overlap,
                    blend_overlap=s.blend_overlap,
                    num_samples=r.num_samples, hierarchical_samples=r.hierarchical_samples,
                    background=tuple(r.background), chunk=r.chunk, seed=config.seed)
