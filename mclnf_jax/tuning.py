"""One test-time protocol for every learner: its settings chosen on meta-validation, one rule.

Each learner that adapts with a tunable optimiser is evaluated on the meta-validation
signals (never the meta-test ones) with every (optimiser, rate) of one grid, the same
grid and step budget for all, and the pair with the highest mean of the main metric over
the evaluated steps 1, 2, 4, ..., max (an area under the log-step curve: it rewards a
fast start and a good end alike) is kept. Then, at that pair, a learner with knobs of
its own (`KNOBS`: EWC's lambda, ER's replay ratio, MER's Reptile rates, MEIL-NeRF's
distillation weight) is evaluated with each setting of its knob grid by the same
criterion, and the best of those and of its configured setting (scored in the first
stage) is kept. The budget rule, the same for every learner: the shared (optimiser,
rate) grid, plus at most `KNOB_BUDGET` settings of its own knobs (learners without
such knobs get none; only knobs that tie no checkpoint are tuned, so only learners that
are not meta-learned have any). Meta-SGD learners adapt with their learned rates and are
not tuned. `launch/tune_tto.py` runs it and writes `<workdir>/tto.json`; `experiment.run`
applies that file to the config before evaluating, so the tables use the tuned settings
(none of these keys ties a checkpoint, so nothing is meta-trained again).
"""
import json
import os
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from mclnf_jax import evaluate, files, learners
from mclnf_jax.errors import UserError
from mclnf_jax.types import TaskSpec

FILE = 'tto.json'
KNOB_BUDGET = 4    # settings of a learner's own knobs tried, at most (after the shared grid)

# Each learner's knob grid: the settings tried, in one place. Every key is declared
# RESULT in configs/base.py (tests/test_tuning.py checks it).
KNOBS: dict[str, list[dict[str, Any]]] = {
    'ewc': [{'ewc_lambda': v} for v in (0.01, 0.1, 1.0, 10.0)],
    'er': [{'replay_ratio': v} for v in (0.25, 0.5, 0.75)],
    'mer': [{'beta': 1.0, 'gamma': 1.0}, {'beta': 0.3, 'gamma': 1.0},
            {'beta': 0.1, 'gamma': 1.0}, {'beta': 0.1, 'gamma': 0.3}],
    'meil_nerf': [{'replay_lambda': v} for v in (0.1, 1.0, 10.0)],
}


def tunable(config: ml_collections.ConfigDict, name: str) -> bool:
  """Meta-SGD learners adapt with learned rates; the trivial row adapts nothing."""
  return (not config.methods[name].get('meta_sgd', '')
          and learners.BY_NAME[learners.canonical(name)].group != 'Mean')


def _score(config, name, spec, modality, meta_params, val_episodes, steps, values: dict):
  """(metric, mean of the main metric over `steps`) of one trial setting."""
  trial = config.copy_and_resolve_references()
  trial.methods[name].update(**values)
  learner = learners.build(trial, name, spec)
  curves = evaluate.Evaluator(learner, modality).curves(meta_params, val_episodes, steps,
                                                        log=None)[0]
  metric = 'psnr' if 'psnr' in curves else sorted(curves)[0]
  return metric, float(np.nanmean(curves[metric]))


def _best(scores: dict) -> str:
  return max(scores, key=lambda k: np.nan_to_num(scores[k], nan=-np.inf))


def _label(values: dict) -> str:
  return ' '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                  for k, v in values.items())


def choose(config: ml_collections.ConfigDict, name: str, spec: TaskSpec, modality,
           meta_params: Any, val_episodes, grid: Sequence[tuple[str, float]],
           max_steps: int, log: Callable[[str], None] = print, knobs: bool = True) -> dict:
  """The best (optimiser, rate) of `grid` for one learner, then (knobs=True) the best
  setting of its `KNOBS` at that pair; every trial's score."""
  steps = evaluate.eval_steps(max_steps)
  scores = {}
  for opt, lr in grid:
    metric, score = _score(config, name, spec, modality, meta_params, val_episodes, steps,
                           dict(tto_opt=opt, tto_lr=lr))
    scores[f'{opt} {lr:g}'] = score
    log(f'tune {name}: {opt} {lr:g} -> mean {metric} {score:.3f}')
  best = _best(scores)
  opt, lr = best.split()
  chosen = {'tto_opt': opt, 'tto_lr': float(lr), 'scores': scores, 'metric': metric,
            'steps': steps}
  grid_of_knobs = KNOBS.get(name, [])[:KNOB_BUDGET] if knobs else []
  if grid_of_knobs:
    configured = {k: config.methods[name][k] for k in grid_of_knobs[0]}
    settings = {_label(configured): (configured, scores[best])}   # scored above
    for values in grid_of_knobs:
      if _label(values) in settings:
        continue
      metric, score = _score(config, name, spec, modality, meta_params, val_episodes, steps,
                             dict(tto_opt=opt, tto_lr=float(lr), **values))
      settings[_label(values)] = (values, score)
      log(f'tune {name}: {opt} {float(lr):g} {_label(values)} -> mean {metric} {score:.3f}')
    knob_scores = {k: v[1] for k, v in settings.items()}
    chosen.update(knobs=dict(settings[_best(knob_scores)][0]), knob_scores=knob_scores)
  return chosen


def write(workdir: str, chosen: dict[str, dict]) -> str:
  path = os.path.join(workdir, FILE)
  files.write_json(path, chosen)
  return path


def apply(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """The config with the tuned test-time settings of `<workdir>/tto.json`, if any: each
  learner's optimiser and rate, and its knobs (only keys of its `KNOBS` grid)."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return config
  try:
    with open(path) as f:
      chosen = json.load(f)
    config = config.copy_and_resolve_references()
    for name, c in chosen.items():
      if name in config.methods:
        config.methods[name].update(tto_opt=c['tto_opt'], tto_lr=float(c['tto_lr']))
        knobs = c.get('knobs', {})
        tunable_keys = {k for values in KNOBS.get(name, []) for k in values}
        if set(knobs) - tunable_keys:
          raise KeyError(f'{name} has no tuned knob {sorted(set(knobs) - tunable_keys)}')
        config.methods[name].update(**knobs)
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a test-time tuning result ({e}): rerun '
                    'python -m launch.tune_tto or move the file aside') from None
  return config
