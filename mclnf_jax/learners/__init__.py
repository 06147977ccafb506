"""The method registry: every method of the paper, one row each, one module each.

Every other list of methods (configs' learner lists and widths, the tables' display
names and groups, the CPU scale-down) derives from `METHODS`. A method `name` is the
module `mclnf_jax.learners.<name>` with a `make(setup) -> Learner`.
"""
import importlib
from typing import NamedTuple

import ml_collections

from mclnf_jax import losses
from mclnf_jax.errors import UserError
from mclnf_jax.fields import Field
from mclnf_jax.fields.nerf import NeRFMLP
from mclnf_jax.fields.siren import Siren
from mclnf_jax.learners.base import Learner, make_optimizer, with_remat
from mclnf_jax.learners.setup import Setup
from mclnf_jax.types import MODALITIES, TaskSpec

EVERY = MODALITIES
GRIDS = tuple(m for m in MODALITIES if m != 'nerf')


class Method(NamedTuple):
  name: str              # config.learners / config.methods key and module name
  display: str           # the paper's row label
  group: str             # the paper's method group (see GROUPS)
  modular: bool          # one expert per task (expert width in the paper configs)
  meta_learned: bool     # has a meta-trained init (meta_loss)
  modalities: tuple      # the modalities whose paper tables list it
  sgd_rule: bool = False  # adapts with the SGD rule it defines (MAML+CL and OML: the
                          # meta-trained inner rule; MER: its Reptile steps at tto_lr per
                          # test-time step), not a tuned optimiser


# The paper's method groups, in table order.
GROUPS = {'Mean': 'Trivial baseline', 'OL': 'Offline Learning', 'CL': 'Continual Learning',
          'CML': 'Continual Meta-Learning', 'MOL': 'Meta-Offline Learning',
          'MCL': 'Meta-Continual Learning'}

# In the paper's table order.
METHODS = (
    Method('mean', 'Signal mean', 'Mean', False, False, EVERY),
    Method('ol', 'OL', 'OL', False, False, EVERY),
    Method('cl', 'CL', 'CL', False, False, GRIDS),
    Method('er', 'ER', 'CL', False, False, EVERY),
    Method('ewc', 'EWC', 'CL', False, False, EVERY),
    Method('meil_nerf', 'MEIL-NeRF', 'CL', False, False, ('nerf',)),
    Method('mer', 'MER', 'CML', False, False, GRIDS, sgd_rule=True),
    Method('mol', 'MOL', 'MOL', False, True, EVERY),
    Method('maml_cl', 'MAML+CL', 'MCL', False, True, EVERY, sgd_rule=True),
    Method('oml', 'OML', 'MCL', False, True, EVERY, sgd_rule=True),
    Method('modular', 'Ours (mod)', 'MCL', True, True, EVERY),
    Method('modular_fim', 'Ours (MIM)', 'MCL', True, True, EVERY),
)
BY_NAME = {m.name: m for m in METHODS}
# Names of earlier versions, still accepted in config.learners.
ALIASES = {'mcl': 'modular', 'mcl_fim': 'modular_fim'}
AVAILABLE = tuple(BY_NAME)


def canonical(name: str) -> str:
  return ALIASES.get(name, name)


def paper_methods(modality: str) -> tuple[str, ...]:
  """The rows of the paper's table for a modality, in table order."""
  return tuple(m.name for m in METHODS if modality in m.modalities)


def build_field(config: ml_collections.ConfigDict, width: int, spec: TaskSpec) -> Field:
  f = config.field
  if f.kind == 'siren':
    module = Siren(width=width, depth=f.depth, out_dim=spec.out_dim, w0=f.w0,
                   w0_first=f.w0_first, input_scale=f.input_scale, sine=f.sine)
  elif f.kind == 'nerf':
    module = NeRFMLP(depth=f.depth, width=width, pos_freqs=f.pos_freqs,
                     dir_freqs=f.dir_freqs, skip=f.skip)
  else:
    raise UserError(f'unknown field.kind={f.kind!r}: use siren or nerf')
  return Field(module, in_dim=spec.in_dim)


def build_setup(config: ml_collections.ConfigDict, name: str, spec: TaskSpec) -> Setup:
  m = config.methods[canonical(name)]
  return Setup(field=build_field(config, m.width, spec), predict_fn=spec.predictor,
               route=spec.route, num_tasks=spec.num_tasks,
               loss=losses.by_name(m.loss, config.fim),
               tto_opt=make_optimizer(m.tto_opt, m.tto_lr),
               inner_opt=make_optimizer(m.inner_opt, m.inner_lr),
               inner_steps=config.meta.inner_steps, first_order=config.meta.first_order,
               method=m, batch=spec.batch, tto_batch=spec.tto_batch, query=spec.query,
               draw=spec.draw)


def build(config: ml_collections.ConfigDict, name: str, spec: TaskSpec) -> Learner:
  """The learner `name` (or an alias of it) for signals described by `spec`."""
  name = canonical(name)
  if name not in BY_NAME:
    raise UserError(f'unknown learner {name!r} in config.learners: available are '
                    f'{",".join(AVAILABLE)}')
  if name not in config.methods:
    raise UserError(f'learner {name!r} has no settings: add config.methods.{name}')
  if config.methods[name].get('meta_sgd', '') not in ('', 'tensor', 'param'):
    raise UserError(f'config.methods.{name}.meta_sgd={config.methods[name].meta_sgd!r}: '
                    "use '' (off), tensor or param")
  if config.methods[name].get('meta_sgd', '') and not BY_NAME[name].meta_learned:
    raise UserError(f'config.methods.{name}.meta_sgd: {name} is not meta-learned, so it has '
                    'no inner rates to learn')
  module = importlib.import_module(f'mclnf_jax.learners.{name}')
  learner = module.make(build_setup(config, name, spec))
  if learner.meta_loss is None:
    return learner
  return learner._replace(meta_loss=with_remat(config.meta.remat, learner.meta_loss))


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The learners a run compares, in the order of config.learners (aliases resolved)."""
  found = [canonical(n.strip()) for n in config.learners.split(',') if n.strip()]
  if not found:
    raise UserError('config.learners is empty: name at least one of ' + ','.join(AVAILABLE))
  return list(dict.fromkeys(found))
