"""The experiment as a library function: meta-train, evaluate, report.

`main.py`, the tests and `launch/` all call `run(config, workdir, mode)`. Layout of a
workdir:

  <learner>/config.json     what the learner's checkpoints were trained with
  <learner>/checkpoints/    orbax: the whole meta-state pytree (resume from here)
  results/<learner>.json    its evaluation curves (a rerun with the same settings skips it)
  results/<learner>.npz     kept reconstructions
  table_<metric>.md/.csv, curves_<metric>.png, curves.csv, reconstructions.png
"""
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from mclnf_jax import config_checks, evaluate, learners, meta, modalities, report
from mclnf_jax.errors import UserError
from mclnf_jax.learners.base import Learner
from mclnf_jax.tasks import Modality
from mclnf_jax.types import Episode, stack_episodes

MODES = ('train', 'eval', 'train_and_eval')


def learner_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  """Everything a learner's meta-trained checkpoint depends on (as plain JSON values).

  Test-time settings (config.eval, tto_* keys of the method and of the scene) are left
  out: changing them re-evaluates but keeps the meta-trained checkpoint.
  """
  c = json.loads(config.to_json())
  return {'learner': name, 'seed': c['seed'], 'modality': c['modality'], 'data': c['data'],
          'tasks': c['tasks'], 'field': c['field'], 'fim': c['fim'],
          'method': _split_tto(c['methods'][name])[0], 'meta': c['meta'],
          'scene': _split_tto(c['scene'])[0], 'render': c['render']}


def _split_tto(section: dict) -> tuple[dict, dict]:
  """(keys a checkpoint depends on, test-time keys `tto_*`) of a config section."""
  tto = {k: v for k, v in section.items() if k.startswith('tto_')}
  return {k: v for k, v in section.items() if k not in tto}, tto


def _first_difference(a: Any, b: Any, path: str = '') -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if a.get(k) != b.get(k):
        return _first_difference(a.get(k), b.get(k), f'{path}.{k}' if path else k)
  return f'{path} ({a!r} there, {b!r} now)'


def _write_json(path: str, obj: Any) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def check_workdir(config: ml_collections.ConfigDict, workdir: str, name: str) -> str:
  """<workdir>/<name>/, after checking that a run it holds is of the same config."""
  folder = os.path.join(workdir, name)
  path = os.path.join(folder, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    identity = learner_identity(config, name)
    if stored != identity:
      raise UserError(f'{folder} holds a {name} run of another config: '
                      f'{_first_difference(stored, identity)}; use a new --workdir or delete it')
  return folder


def _claim_workdir(config: ml_collections.ConfigDict, folder: str, name: str) -> None:
  """Writes the identity that check_workdir compares against, once training starts."""
  path = os.path.join(folder, 'config.json')
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    _write_json(path, learner_identity(config, name))


class Signals:
  """Meta-train / meta-validation / meta-test signals, loaded once on first use."""

  def __init__(self, config: ml_collections.ConfigDict, modality: Modality):
    self.config, self.modality, self._cache = config, modality, {}

  def _split(self, split: str) -> np.ndarray:
    if split not in self._cache:
      self._cache[split] = modalities.load_signals(self.config, split)
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


def _checkpoints(folder: str) -> ocp.CheckpointManager:
  """The learner's checkpoint folder: the latest whole meta-state, saved synchronously."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(folder, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))


def _fresh_state(config: ml_collections.ConfigDict, learner: Learner):
  """(outer optimiser, meta-state at step 0): also the template checkpoints restore into."""
  m = config.meta
  optimizer = meta.outer_optimizer(m.lr, m.steps, m.clip, m.lr_final_fraction)
  return optimizer, meta.init_state(learner, optimizer, jax.random.key(config.seed))


def meta_train(config: ml_collections.ConfigDict, learner: Learner, signals: Signals,
               folder: str) -> Any:
  """Meta-trains (or resumes) one learner; returns its best meta-params."""
  m = config.meta
  optimizer, state = _fresh_state(config, learner)
  _claim_workdir(config, folder, learner.name)
  manager = _checkpoints(folder)
  latest = manager.latest_step()
  if latest is not None:
    state = manager.restore(latest, args=ocp.args.StandardRestore(state))
    logging.info('%s: resumed meta-training at step %d', learner.name, latest)
  if int(state['step']) < m.steps:
    train, val = signals.train_val()
    val_batch = signals.episodes(val)

    def episode_batch(step: int) -> Episode:
      idx = meta.process_slice(meta.batch_indices(config.seed, step, len(train), m.batch_size))
      return signals.episodes([train[i] for i in idx])

    def save(state):
      manager.save(int(state['step']), args=ocp.args.StandardSave(state))

    for state in meta.train(learner, optimizer, state, episode_batch, val_batch, steps=m.steps,
                            val_every=m.val_every, log_every=m.log_every, save=save,
                            save_every=m.save_every):
      pass
  manager.close()
  return state['best_params']


def load_meta_params(config, learner: Learner, folder: str) -> Any:
  """Best meta-params of a meta-training run (random init if not meta-learned)."""
  if not learner.meta_learned:
    return learner.init(jax.random.key(config.seed))
  latest = None
  if os.path.isdir(os.path.join(folder, 'checkpoints')):
    manager = _checkpoints(folder)
    latest = manager.latest_step()
  if latest is None:
    raise UserError(f'no meta-trained checkpoint for {learner.name} in {folder}: '
                    'run with --mode=train (or train_and_eval) first')
  state = manager.restore(latest, args=ocp.args.StandardRestore(_fresh_state(config, learner)[1]))
  manager.close()
  if latest < config.meta.steps:
    logging.warning('%s: evaluating an unfinished meta-training run (step %d of %d)',
                    learner.name, latest, config.meta.steps)
  return state['best_params']


def eval_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  c = json.loads(config.to_json())
  tto = {**_split_tto(c['methods'][name])[1], **_split_tto(c['scene'])[1]}
  return {**learner_identity(config, name), 'eval': c['eval'], 'tto': tto}


def evaluate_learner(config, learner: Learner, modality: Modality, meta_params: Any,
                     signals: Signals, results_dir: str) -> dict:
  """Curves of one learner on the meta-test signals (cached in results/<name>.json)."""
  path = os.path.join(results_dir, f'{learner.name}.json')
  identity = eval_identity(config, learner.name)
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if cached['identity'] == identity:
      logging.info('%s: evaluation already done (%s)', learner.name, path)
      return cached
  steps = evaluate.eval_steps(config.eval.max_steps)
  test = signals.test()
  evaluator = evaluate.Evaluator(learner, modality)
  per_signal, kept, seconds = {}, [], 0.0
  for start in range(0, len(test), config.eval.batch_size):
    group = test[start:start + config.eval.batch_size]
    keep = min(len(group), max(0, config.eval.num_grid - start))
    values, preds, states, secs = evaluator.curves(meta_params, signals.episodes(group),
                                                   steps, keep=keep)
    report.save_flythroughs(modality, learner.name, learner.predict, states, group[:keep],
                            start, results_dir)
    for k, v in values.items():
      per_signal.setdefault(k, []).append(v)
    kept.append(preds)
    seconds += secs
  per_signal = {k: np.concatenate(v).astype(float) for k, v in per_signal.items()}
  result = {'identity': identity, 'steps': steps, 'num_signals': len(test),
            'curves': {k: np.nanmean(v, axis=0).tolist() for k, v in per_signal.items()},
            'per_signal': {k: v.tolist() for k, v in per_signal.items()},
            'adapt_seconds': seconds}
  recon_path = os.path.join(results_dir, f'{learner.name}.npz')
  np.savez(recon_path + '.tmp.npz', recon=np.concatenate(kept))
  os.replace(recon_path + '.tmp.npz', recon_path)
  _write_json(path, result)
  return result


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train_and_eval') -> dict:
  """Meta-trains and/or evaluates every learner of `config.learners`; returns the results."""
  if mode not in MODES:
    raise UserError(f'unknown --mode={mode}: use one of {", ".join(MODES)}')
  config_checks.check(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} is a file: name a folder')
  modality = modalities.make_modality(config)
  signals = Signals(config, modality)
  names = learners.names(config)
  built = {name: learners.build(config, name, modality) for name in names}
  folders = {name: check_workdir(config, workdir, name) for name in names}
  # The data a run needs is loaded (and so checked) before anything is written.
  if mode != 'eval' and any(learner.meta_learned for learner in built.values()):
    signals.train_val()
  if mode != 'train':
    signals.test()
  meta_params = {}
  if mode in ('train', 'train_and_eval'):
    for name, learner in built.items():
      if learner.meta_learned:
        meta_params[name] = meta_train(config, learner, signals, folders[name])
  if mode == 'train':
    return {}
  for name, learner in built.items():     # every checkpoint found before any evaluation
    if name not in meta_params:
      meta_params[name] = load_meta_params(config, learner, folders[name])
  results_dir = os.path.join(workdir, 'results')
  os.makedirs(results_dir, exist_ok=True)
  results = {name: evaluate_learner(config, learner, modality, meta_params[name], signals,
                                    results_dir) for name, learner in built.items()}
  shown = signals.episodes(signals.test()[:config.eval.num_grid])
  report.write_report(workdir, modality, results, shown)
  return results
