"""A workdir's identity: which config a learner's checkpoints and results belong to.

Each meta-learned learner's folder stores, once meta-training starts, the config keys its
checkpoint depends on (`learner_identity`); a later run with other values is refused with
a one-line error naming the first difference.

The rule is declared per key in mclnf_jax/configs/base.py (see configs/keys.py; CONFIG.md
lists every key): the identity holds each key of kind CHECKPOINT that the run reads
(nested by section, as in the config; compared key by key). Left out are
  * RESULT keys (test time: `tto_*`, `eval.*`, `data.num_test`; and `meta.steps`):
    changing them re-evaluates the checkpoint,
  * RUN keys (log/save cadence, chunk sizes, `name`, `learners`): they change nothing,
  * keys the run does not read: sections and keys declared `used_by` other built-in
    modalities (e.g. `scene.*` and `render.*` for an image run, `data.frames` for audio),
    keys declared `only` for other values of a key (e.g. `fim.*` unless the learner's
    loss is 'fim', `field.pos_freqs` unless field.kind is nerf), and `methods.<other>.*`.

Meta-steps. The checkpoint holds `meta.schedule_steps` (its effective value: 0 means
meta.steps), the length of the outer optimiser's cosine schedule, not `meta.steps`. So
a run meta-trained with meta.steps=N extends to more steps exactly with
`--config.meta.steps=M --config.meta.schedule_steps=N` (after step N the rate stays at
its final value); raising meta.steps alone would change the schedule of the steps already
taken, and is refused with a one-line error saying to pass --config.meta.schedule_steps=N.

Evaluation results carry `eval_identity`: the checkpoint identity plus meta.steps and
every RESULT key (test-time keys are not narrowed by modality: re-evaluating is cheap).
Identities stored by earlier versions (nested sections) are read too: their extra keys
are ignored, a key they lack counts as its declared default, and meta.steps stands for
meta.schedule_steps.
"""
import json
import os
import ml_collections

from mclnf_jax import files, learners
from mclnf_jax.configs import base, keys
from mclnf_jax.errors import UserError
from mclnf_jax.types import MODALITIES

_ABSENT = '<absent>'


def _own(path: str, learner: str) -> bool:
  """False for `methods.<other learner>.*` keys."""
  parts = path.split('.')
  return parts[0] != keys.PER_LEARNER or len(parts) < 3 or parts[1] == learner


def _read(decl: keys.Key, config: ml_collections.ConfigDict, flat: dict,
          learner: str) -> bool:
  """Whether a run of `config` reads a key declared `decl` (its used_by / only)."""
  if decl.used_by is not None and config.modality in MODALITIES \
      and config.modality not in decl.used_by:
    return False
  if decl.only is not None:
    path, values = decl.only
    if flat.get(path.format(learner=learner)) not in values:
      return False
  return True


def _identity(config: ml_collections.ConfigDict, name: str, kinds: tuple[str, ...],
              narrow: tuple[str, ...]) -> dict:
  """{'learner': name, path: value} of the keys of `kinds` (those of `narrow` only when
  the run reads them)."""
  learner = learners.canonical(name)
  flat = keys.flatten(json.loads(config.to_json()))
  declared = base.declarations()
  out = {'learner': name}
  for path, value in sorted(flat.items()):
    decl = declared.get(path, keys.Key(value))   # undeclared: ties the checkpoint
    if decl.kind not in kinds or not _own(path, learner):
      continue
    if decl.kind in narrow and not _read(decl, config, flat, learner):
      continue
    out[path] = json.loads(json.dumps(decl.effective(config))) if decl.effective else value
  return out


def learner_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  """Everything a learner's meta-trained checkpoint depends on (plain JSON values)."""
  return keys.nest(_identity(config, name, (keys.CHECKPOINT,), (keys.CHECKPOINT,)))


def eval_identity(config: ml_collections.ConfigDict, name: str) -> dict:
  """Everything an evaluation result depends on: the checkpoint's keys and RESULT keys."""
  return keys.nest(_identity(config, name, (keys.CHECKPOINT, keys.RESULT), (keys.CHECKPOINT,)))


def _upgrade(stored: dict, name: str) -> dict:
  """A stored identity as a flat dict; identities of earlier versions kept the learner's
  method section as 'method', had no meta.schedule_steps (meta.steps stood for it) and
  trained OML full-batch (no methods.oml.online_batch)."""
  stored = dict(stored)
  if 'method' in stored:
    stored['methods'] = {learners.canonical(name): stored.pop('method')}
  flat = keys.flatten(stored)
  if 'meta.schedule_steps' not in flat and 'meta.steps' in flat:
    flat['meta.schedule_steps'] = flat['meta.steps']
  if name == 'oml' and 'methods.oml.online_batch' not in flat:
    flat['methods.oml.online_batch'] = 0
  return flat


def _differences(stored: dict, identity: dict) -> dict:
  """{key: stored value} of the keys of `identity` whose stored value differs (a key
  never stored counts as its declared default)."""
  declared = base.declarations()
  out = {}
  for path, value in identity.items():
    there = stored.get(path, _ABSENT)
    if there == _ABSENT and path in declared:
      there = json.loads(json.dumps(declared[path].default))
    if there != value:
      out[path] = there
  return out


def read_stored(path: str, folder: str) -> dict:
  """A stored identity (config.json); a one-line error if it is not a JSON object."""
  try:
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise UserError(f'{path} is not valid JSON ({e}): restore it, or move {folder} aside '
                    'or use another --workdir') from None
  if not isinstance(stored, dict):
    raise UserError(f'{path} is not a config identity (a JSON {type(stored).__name__}, not '
                    f'an object): restore it, or move {folder} aside or use another '
                    '--workdir')
  return stored


def check(config: ml_collections.ConfigDict, workdir: str, name: str) -> str:
  """<workdir>/<name>/, after checking that a run it holds is of the same config."""
  folder = os.path.join(workdir, name)
  path = os.path.join(folder, 'config.json')
  if not os.path.exists(path):
    return folder
  stored = _upgrade(read_stored(path, folder), name)
  identity = _identity(config, name, (keys.CHECKPOINT,), (keys.CHECKPOINT,))
  differ = _differences(stored, identity)
  if list(differ) == ['meta.schedule_steps'] and not config.meta.schedule_steps:
    old = differ['meta.schedule_steps']
    raise UserError(
        f'{folder} holds a {name} run whose outer-rate schedule is {old} meta-steps long, '
        f'not meta.steps={config.meta.steps}: to continue it pass '
        f'--config.meta.schedule_steps={old}, or use a new --workdir')
  if differ:
    key = next(iter(differ))
    raise UserError(f'{folder} holds a {name} run of another config: {key} '
                    f'({differ[key]!r} there, {identity[key]!r} now); '
                    'use a new --workdir or delete it')
  return folder


def claim(config: ml_collections.ConfigDict, folder: str, name: str) -> None:
  """Writes the identity that `check` compares against, once meta-training starts."""
  path = os.path.join(folder, 'config.json')
  if not os.path.exists(path):
    files.write_json(path, learner_identity(config, name))
