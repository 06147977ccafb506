"""Config -> modality and signals: the one place that knows every modality by name."""
import ml_collections
import numpy as np

from mclnf_jax.errors import UserError
from mclnf_jax.tasks import Modality

MODALITIES = ('image',)


def make_modality(config: ml_collections.ConfigDict) -> Modality:
  t = config.tasks
  if config.modality == 'image':
    from mclnf_jax.tasks.image import ImageTasks
    res = config.data.resolution
    return ImageTasks(height=res, width=res, channels=3, num_tasks=t.num_tasks,
                      split=t.split, grid=(t.grid_rows, t.grid_cols))
  raise UserError(f'unknown config.modality={config.modality!r}: use one of {MODALITIES}')


def load_signals(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """All signals of a split as one array [N, *signal_shape] (float32)."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  d = config.data
  data.num_signals = (d.num_train + d.num_val if d.num_train else 0) if split == 'train' else d.num_test
  if config.modality == 'image':
    from mclnf_jax.data.images import load_images
    return load_images(data, split)
  raise UserError(f'unknown config.modality={config.modality!r}: use one of {MODALITIES}')
