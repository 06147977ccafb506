"""The experiment as a library function: meta-train, evaluate, report, in that order.

`main.py`, the tests and `launch/` all call `run(config, workdir, mode)`. A workdir holds

  <learner>/config.json     what the learner's checkpoints were trained with (workdir.py)
  <learner>/checkpoints/    orbax: the whole meta-state pytree (checkpoints.py)
  results/<learner>.json    its evaluation curves (a rerun with the same settings skips it)
  results/<learner>.npz     kept reconstructions
  table_<metric>.md/.csv, curves_<metric>.png, curves.csv, reconstructions*

Many devices and hosts (`distributed.py`): every process runs `run` on the mesh of
`config.mesh`; process 0 builds embedded datasets before the others read them, and alone
writes config.json, results, tables and figures (the others wait at a barrier); each
process builds only its own rows of a meta-batch.
"""
import os

import jax
import ml_collections
import numpy as np

from mclnf_jax import distributed, evaluate, identity, learners, meta, report, tuning
from mclnf_jax.configs import checks
from mclnf_jax.data.signals import load_signals
from mclnf_jax.errors import UserError
from mclnf_jax.learners.base import Learner
from mclnf_jax.tasks import Modality, task_spec
from mclnf_jax.tasks.factory import make_modality
from mclnf_jax.types import Episode, stack_episodes

MODES = ('train', 'eval', 'train_and_eval')


class Signals:
  """Meta-train / meta-validation / meta-test signals, loaded once on first use."""

  def __init__(self, config: ml_collections.ConfigDict, modality: Modality):
    self.config, self.modality, self._cache = config, modality, {}

  def _split(self, split: str) -> np.ndarray:
    if split not in self._cache:
      self._cache[split] = load_signals(self.config, split)
    return self._cache[split]

  def train_val(self):
    signals, num_val = self._split('train'), self.config.data.num_val
    if len(signals) <= num_val:
      raise UserError(f'only {len(signals)} meta-train signals for data.num_val={num_val}: '
                      'lower data.num_val or give more data')
    return signals[:-num_val], signals[-num_val:]

  def test(self):
    return self._split('test')

  def episodes(self, signals) -> Episode:
    """Signals (an array or a list) -> their episodes stacked on axis 0."""
    return stack_episodes([self.modality.episode(s) for s in signals])


def rolled_pools(episodes: Episode, rows: int) -> Episode:
  """Episodes whose task pools start `rows` rows later (cyclically): meta-step s passes
  s * inner_steps * batch, so the inner loops of successive meta-steps fit successive
  batches of each pool (an inner loop's step k always fits the pool's k-th batch).
  Full-batch tasks (rows 0: grids) are returned as they are."""
  if not rows:
    return episodes
  shift = rows % episodes.context_x.shape[-2]
  roll = lambda a: np.roll(a, -shift, axis=-2)
  return episodes._replace(context_x=roll(episodes.context_x),
                           context_y=roll(episodes.context_y))


def meta_train(config: ml_collections.ConfigDict, learner: Learner, signals: Signals,
               folder: str, mesh=None):
  """Meta-trains (or resumes) one learner in its folder; returns its best meta-params.

  mesh: each process builds the episodes of its own rows of a meta-batch only."""
  m = config.meta
  distributed.on_main(lambda: identity.claim(config, folder, learner.name),
                      f'claimed {folder}')
  train, val = signals.train_val()

  batch = task_spec(signals.modality).batch

  def episode_batch(step: int) -> Episode:
    idx = meta.process_slice(meta.batch_indices(config.seed, step, len(train), m.batch_size),
                             mesh)
    return rolled_pools(signals.episodes([train[i] for i in idx]),
                        step * m.inner_steps * batch)
  experts = getattr(learners.BY_NAME.get(learner.name), 'modular', False)   # expert axis
  return meta.meta_train(learner, m, config.seed, folder, episode_batch,
                         lambda: signals.episodes(val), mesh=mesh, experts=experts)


def meta_params(config, learner: Learner, folder: str, mesh=None):
  """Best meta-params of a meta-training run (the random init if not meta-learned)."""
  if not learner.meta_learned:
    return learner.init(jax.random.key(config.seed))
  return meta.best_params(learner, config.meta, config.seed, folder, mesh)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train_and_eval') -> dict:
  """Meta-trains and/or evaluates every learner of `config.learners`; returns the results."""
  if mode not in MODES:
    raise UserError(f'unknown --mode={mode}: use one of {", ".join(MODES)}')
  checks.check(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} is a file: name a folder')
  config = tuning.apply(config, workdir)      # test-time settings of launch.tune_tto
  modality = make_modality(config)
  mesh = distributed.mesh_of(config)
  signals = Signals(config, modality)
  names = learners.names(config)
  built = {name: learners.build(config, name, task_spec(modality)) for name in names}
  folders = {name: identity.check(config, workdir, name) for name in names}
  # The data a run needs is loaded (and so checked) before anything is written.
  # Process 0 first: it builds embedded datasets the others then read.
  if mode != 'eval' and any(learner.meta_learned for learner in built.values()):
    distributed.check_divides(config.meta.batch_size, mesh, 'config.meta.batch_size')
    distributed.main_first(signals.train_val, 'loaded meta-train signals')
  if mode != 'train':
    distributed.main_first(signals.test, 'loaded meta-test signals')
  params = {}
  if mode in ('train', 'train_and_eval'):
    for name, learner in built.items():
      if learner.meta_learned:
        params[name] = meta_train(config, learner, signals, folders[name], mesh)
  if mode == 'train':
    return {}
  for name, learner in built.items():     # every checkpoint found before any evaluation
    if name not in params:
      params[name] = meta_params(config, learner, folders[name], mesh)
  results_dir = os.path.join(workdir, 'results')
  results = {name: evaluate.evaluate_learner(
      learner, modality, params[name], signals.test(), signals.episodes, config.eval,
      identity.eval_identity(config, name), results_dir, mesh=mesh)
      for name, learner in built.items()}
  shown = signals.episodes(signals.test()[:config.eval.num_shown])
  distributed.on_main(lambda: report.write_report(workdir, modality, results, shown),
                      'wrote the report')
  return results
