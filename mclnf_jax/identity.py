"""A workdir's identity: which config a learner's checkpoints and results belong to.

Each meta-learned learner's folder stores, once meta-training starts, the config keys its
checkpoint depends on (`learner_identity`); a later run with other values is refused with
a one-line error naming the first difference. Test-time keys (config.eval, `tto_*` keys
of the method and of the scene) are left out: changing them re-evaluates but keeps the
meta-trained checkpoint. Evaluation results carry `eval_identity` (everything) instead.
"""
import json
import os
from typing import Any

import ml_collections

from mclnf_jax import files
from mclnf_jax.errors import UserError


def _split_tto(section: dict) -> tuple[dict, dict]:
  """(keys a checkpoint depends on, test-time keys `tto_*`) of a config section."""
  tto = {k: v for k, v in section.items() if k.startswith('tto_')}
  return {k: v for k, v in section.items() if k not in tto}, tto


def learner_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  """Everything a learner's meta-trained checkpoint depends on (as plain JSON values)."""
  c = json.loads(config.to_json())
  return {'learner': name, 'seed': c['seed'], 'modality': c['modality'], 'data': c['data'],
          'tasks': c['tasks'], 'field': c['field'], 'fim': c['fim'],
          'method': _split_tto(c['methods'][name])[0], 'meta': c['meta'],
          'scene': _split_tto(c['scene'])[0], 'render': c['render']}


def eval_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  """Everything an evaluation result depends on."""
  c = json.loads(config.to_json())
  tto = {**_split_tto(c['methods'][name])[1], **_split_tto(c['scene'])[1]}
  return {**learner_identity(config, name), 'eval': c['eval'], 'tto': tto}


def _first_difference(a: Any, b: Any, path: str = '') -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if a.get(k) != b.get(k):
        return _first_difference(a.get(k), b.get(k), f'{path}.{k}' if path else k)
  return f'{path} ({a!r} there, {b!r} now)'


def check(config: ml_collections.ConfigDict, workdir: str, name: str) -> str:
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


def claim(config: ml_collections.ConfigDict, folder: str, name: str) -> None:
  """Writes the identity that `check` compares against, once meta-training starts."""
  path = os.path.join(folder, 'config.json')
  if not os.path.exists(path):
    files.write_json(path, learner_identity(config, name))
