"""Learners by name; each method of the paper is one module with a `make(setup)`."""
import importlib

import ml_collections

from mclnf_jax import config_base, losses
from mclnf_jax.errors import UserError
from mclnf_jax.fields import Field
from mclnf_jax.fields.nerf import NeRFMLP
from mclnf_jax.fields.siren import Siren
from mclnf_jax.learners.base import Learner, make_optimizer
from mclnf_jax.learners.setup import Setup
from mclnf_jax.tasks import Modality

# Learner names; each is the module mclnf_jax.learners.<name> (imported on demand).
AVAILABLE = config_base.ALL_LEARNERS + ('meil_nerf',)


def build_field(config: ml_collections.ConfigDict, width: int, modality: Modality) -> Field:
  f = config.field
  if f.kind == 'siren':
    module = Siren(width=width, depth=f.depth, out_dim=modality.out_dim, w0=f.w0,
                   w0_first=f.w0_first, sine=f.sine)
  elif f.kind == 'nerf':
    module = NeRFMLP(depth=f.depth, width=width, pos_freqs=f.pos_freqs,
                     dir_freqs=f.dir_freqs, skip=f.skip)
  else:
    raise UserError(f'unknown field.kind={f.kind!r}: use siren or nerf')
  return Field(module, in_dim=modality.in_dim)


def build_setup(config: ml_collections.ConfigDict, name: str, modality: Modality) -> Setup:
  m = config.methods[name]
  return Setup(field=build_field(config, m.width, modality), modality=modality,
               loss=losses.by_name(m.loss, config.fim),
               tto_opt=make_optimizer(m.tto_opt, m.tto_lr),
               inner_opt=make_optimizer(m.inner_opt, m.inner_lr),
               inner_steps=config.meta.inner_steps, first_order=config.meta.first_order,
               method=m)


def build(config: ml_collections.ConfigDict, name: str, modality: Modality) -> Learner:
  if name not in AVAILABLE:
    raise UserError(f'unknown learner {name!r} in config.learners: available are '
                    f'{",".join(AVAILABLE)}')
  if name not in config.methods:
    raise UserError(f'learner {name!r} has no settings: add config.methods.{name}')
  module = importlib.import_module(f'mclnf_jax.learners.{name}')
  return module.make(build_setup(config, name, modality))


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The learners a run compares, in the order of config.learners (at least one)."""
  found = [n.strip() for n in config.learners.split(',') if n.strip()]
  if not found:
    raise UserError('config.learners is empty: name at least one of ' + ','.join(AVAILABLE))
  return found
