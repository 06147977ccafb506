"""The experiment as a library function: meta-train, evaluate, report, in that order.

`main.py`, the tests and `launch/` all call `run(config, workdir, mode)`. A workdir holds

  <learner>/config.json     what the learner's checkpoints were trained with (workdir.py)
  <learner>/checkpoints/    orbax: the whole meta-state pytree (checkpoints.py)
  results/<learner>.json    its evaluation curves (a rerun with the same settings skips it)
  results/<learner>.npz     kept reconstructions
  table_<metric>.md/.csv, curves_<metric>.png, curves.csv, reconstructions*
"""
import os

import jax
import ml_collections
import numpy as np

from mclnf_jax import evaluate, identity, learners, meta, report, tuning
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


def meta_train(config: ml_collections.ConfigDict, learner: Learner, signals: Signals,
               folder: str):
  """Meta-trains (or resumes) one learner in its folder; returns its best meta-params."""
  m = config.meta
  identity.claim(config, folder, learner.name)
  train, val = signals.train_val()

  def episode_batch(step: int) -> Episode:
    idx = meta.process_slice(meta.batch_indices(config.seed, step, len(train), m.batch_size))
    return signals.episodes([train[i] for i in idx])
  return meta.meta_train(learner, m, config.seed, folder, episode_batch,
                         lambda: signals.episodes(val))


def meta_params(config, learner: Learner, folder: str):
  """Best meta-params of a meta-training run (the random init if not meta-learned)."""
  if not learner.meta_learned:
    return learner.init(jax.random.key(config.seed))
  return meta.best_params(learner, config.meta, config.seed, folder)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train_and_eval') -> dict:
  """Meta-trains and/or evaluates every learner of `config.learners`; returns the results."""
  if mode not in MODES:
    raise UserError(f'unknown --mode={mode}: use one of {", ".join(MODES)}')
  checks.check(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} is a file: name a folder')
  config = tuning.apply(config, workdir)      # test-time settings of launch.tune_tto
  modality = make_modality(config)
  signals = Signals(config, modality)
  names = learners.names(config)
  built = {name: learners.build(config, name, task_spec(modality)) for name in names}
  folders = {name: identity.check(config, workdir, name) for name in names}
  # The data a run needs is loaded (and so checked) before anything is written.
  if mode != 'eval' and any(learner.meta_learned for learner in built.values()):
    signals.train_val()
  if mode != 'train':
    signals.test()
  params = {}
  if mode in ('train', 'train_and_eval'):
    for name, learner in built.items():
      if learner.meta_learned:
        params[name] = meta_train(config, learner, signals, folders[name])
  if mode == 'train':
    return {}
  for name, learner in built.items():     # every checkpoint found before any evaluation
    if name not in params:
      params[name] = meta_params(config, learner, folders[name])
  results_dir = os.path.join(workdir, 'results')
  results = {name: evaluate.evaluate_learner(
      learner, modality, params[name], signals.test(), signals.episodes, config.eval,
      identity.eval_identity(config, name), results_dir) for name, learner in built.items()}
  shown = signals.episodes(signals.test()[:config.eval.num_shown])
  report.write_report(workdir, modality, results, shown)
  return results
