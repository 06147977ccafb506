"""Config values checked before anything runs: one-line errors that say what to change."""
import ml_collections

from mclnf_jax import fisher
from mclnf_jax.errors import UserError
from mclnf_jax.fields.sine import get_sine
from mclnf_jax.types import MODALITIES


def _positive(value, key: str) -> None:
  if value <= 0:
    raise UserError(f'config.{key}={value} must be positive')


def check(config: ml_collections.ConfigDict) -> None:
  m, d, e = config.meta, config.data, config.eval
  if config.modality not in MODALITIES:
    raise UserError(f'unknown config.modality={config.modality!r}: use one of '
                    f'{", ".join(MODALITIES)}')
  for key in ('steps', 'batch_size', 'inner_steps', 'lr', 'clip', 'val_every', 'log_every',
              'save_every'):
    _positive(m[key], f'meta.{key}')
  for key in ('max_steps', 'batch_size'):
    _positive(e[key], f'eval.{key}')
  _positive(d.resolution, 'data.resolution')
  _positive(config.field.depth, 'field.depth')
  get_sine(config.field.sine)
  for key in ('num_train', 'num_val', 'num_test', 'seed'):
    if d[key] < 0:
      raise UserError(f'config.data.{key}={d[key]} must be >= 0')
  if not 0 <= m.lr_final_fraction <= 1:
    raise UserError(f'config.meta.lr_final_fraction={m.lr_final_fraction} must be in [0, 1]')
  for name, method in config.methods.items():
    _positive(method.width, f'methods.{name}.width')
    _positive(method.tto_lr, f'methods.{name}.tto_lr')
    _positive(method.inner_lr, f'methods.{name}.inner_lr')
  _positive(config.scene.rays_per_task, 'scene.rays_per_task')
  if config.scene.tto_rays_per_task < 0:
    raise UserError(f'config.scene.tto_rays_per_task={config.scene.tto_rays_per_task} must be '
                    '>= 0 (0: the meta-training rays_per_task)')
  if config.fim.lam < 0:
    raise UserError(f'config.fim.lam={config.fim.lam} must be >= 0')
  if config.fim.fisher not in fisher.ESTIMATORS:
    raise UserError(f'config.fim.fisher={config.fim.fisher!r}: use one of '
                    f'{", ".join(fisher.ESTIMATORS)}')
  _positive(config.fim.damping, 'fim.damping')
