"""One test-time protocol for every learner: its optimiser and rate, chosen by one rule.

Each learner that adapts with a tunable optimiser is evaluated on the meta-validation
signals (never the meta-test ones) with every (optimiser, rate) of one grid, the same
grid and step budget for all, and the pair with the highest mean of the main metric over
the evaluated steps 1, 2, 4, ..., max (an area under the log-step curve: it rewards a
fast start and a good end alike) is kept. Meta-SGD learners adapt with their learned
rates and are not tuned. `launch/tune_tto.py` runs it and writes `<workdir>/tto.json`;
`experiment.run` applies that file to the config before evaluating, so the tables use the
tuned settings (the `tto_*` keys do not tie a checkpoint, so nothing is meta-trained again).
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


def tunable(config: ml_collections.ConfigDict, name: str) -> bool:
  return not config.methods[name].get('meta_sgd', '')


def choose(config: ml_collections.ConfigDict, name: str, spec: TaskSpec, modality,
           meta_params: Any, val_episodes, grid: Sequence[tuple[str, float]],
           max_steps: int, log: Callable[[str], None] = print) -> dict:
  """The best (optimiser, rate) of `grid` for one learner, and every pair's score."""
  steps = evaluate.eval_steps(max_steps)
  scores = {}
  for opt, lr in grid:
    trial = config.copy_and_resolve_references()
    trial.methods[name].update(tto_opt=opt, tto_lr=lr)
    learner = learners.build(trial, name, spec)
    values = evaluate.Evaluator(learner, modality).curves(meta_params, val_episodes, steps,
                                                          log=None)[0]
    metric = 'psnr' if 'psnr' in values else sorted(values)[0]
    score = float(np.nanmean(values[metric]))
    scores[f'{opt} {lr:g}'] = score
    log(f'tune {name}: {opt} {lr:g} -> mean {metric} {score:.3f}')
  best = max(scores, key=lambda k: (np.nan_to_num(scores[k], nan=-np.inf)))
  opt, lr = best.split()
  return {'tto_opt': opt, 'tto_lr': float(lr), 'scores': scores, 'metric': metric,
          'steps': steps}


def write(workdir: str, chosen: dict[str, dict]) -> str:
  path = os.path.join(workdir, FILE)
  files.write_json(path, chosen)
  return path


def apply(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """The config with the tuned test-time settings of `<workdir>/tto.json`, if any."""
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
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a test-time tuning result ({e}): rerun '
                    'python -m launch.tune_tto or move the file aside') from None
  return config
