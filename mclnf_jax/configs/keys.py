"""Config-key declarations: what each key means and whether it ties a checkpoint.

`configs/base.py` declares every key once, next to its default, as `key(default, doc,
kind, used_by=..., only=...)`; the workdir identity (`mclnf_jax/identity.py`) and the
generated reference (`python -m mclnf_jax.configs.reference`, CONFIG.md) both read these
declarations, so neither keeps a list of its own. Three kinds:

  CHECKPOINT  changes the meta-trained result: part of a learner checkpoint's identity,
              so a workdir trained with another value is refused.
  RESULT      changes evaluation results but not the checkpoint (test-time keys `tto_*`,
              `eval.*`, `data.num_test`, `meta.steps`): a rerun re-evaluates.
  RUN         changes neither (logging and saving cadence, chunk sizes, paths of outputs).

A CHECKPOINT key is left out of the identity where it is not read:
  used_by  the built-in modalities (`types.MODALITIES`) that read it; a run of another
           built-in modality ignores it (a registered modality is assumed to read it).
  only     (key path, values): read only while that key has one of the values; the path
           may contain '{learner}' (the learner whose identity is computed).
Keys under `methods.<name>.` belong to learner <name> alone. A key no declaration covers
(e.g. one a config adds) ties the checkpoint.

This module imports nothing of the package, so any module (meta.py included) may use
`schedule_steps`.
"""
import dataclasses
from typing import Any, Callable

import ml_collections

CHECKPOINT, RESULT, RUN = 'checkpoint', 'result', 'run'
KINDS = (CHECKPOINT, RESULT, RUN)
PER_LEARNER = 'methods'   # methods.<name>.* belong to learner <name> alone


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key's declaration (see the module docstring)."""
  default: Any
  doc: str = ''
  kind: str = CHECKPOINT
  used_by: tuple[str, ...] | None = None
  only: tuple[str, tuple] | None = None
  # config -> the value the identity stores (e.g. meta.schedule_steps 0 -> meta.steps).
  effective: Callable[[ml_collections.ConfigDict], Any] | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'unknown key kind {self.kind!r}: use one of {KINDS}')


def key(default: Any, doc: str = '', kind: str = CHECKPOINT, **where) -> Key:
  """A key's declaration: its default, meaning, kind and (optionally) where it is read."""
  return Key(default, doc, kind, **where)


def section(used_by: tuple[str, ...] | None = None,
            **keys: Any) -> ml_collections.ConfigDict:
  """A config section of declared keys; `used_by` applies to each key that names none.
  A plain value stands for `key(value)` (undocumented, ties the checkpoint)."""
  out = {}
  for name, value in keys.items():
    if not isinstance(value, Key):
      value = Key(value)
    if used_by is not None and value.used_by is None:
      value = dataclasses.replace(value, used_by=tuple(used_by))
    out[name] = value
  return ml_collections.ConfigDict(out)


def _walk(tree, prefix: str = ''):
  for name, value in tree.items():
    path = f'{prefix}{name}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from _walk(value, path + '.')
    else:
      yield path, value


def flatten(tree) -> dict[str, Any]:
  """{'a.b.c': leaf} of a nested ConfigDict / dict."""
  return dict(_walk(tree))


def nest(flat: dict[str, Any], sep: str = '.') -> dict:
  """`flatten`'s inverse: nested dicts of {'a.b.c': leaf} (any separator)."""
  out: dict = {}
  for path, value in flat.items():
    *parents, leaf = path.split(sep)
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def declarations(tree: ml_collections.ConfigDict) -> dict[str, Key]:
  """{path: Key} of a declared config (plain leaves become undocumented CHECKPOINT keys)."""
  return {p: v if isinstance(v, Key) else Key(v) for p, v in _walk(tree)}


def defaults(tree: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The plain config of a declared one: every Key replaced by its default."""
  def plain(node):
    return {k: plain(v) if isinstance(v, (ml_collections.ConfigDict, dict))
            else (v.default if isinstance(v, Key) else v) for k, v in node.items()}
  return ml_collections.ConfigDict(plain(tree))


def schedule_steps(m) -> int:
  """Length of the outer optimiser's cosine schedule: meta.schedule_steps, 0 = meta.steps.

  After that many meta-steps the rate stays at its final value (lr * lr_final_fraction),
  so a run extended with an explicit schedule_steps continues exactly."""
  return int(getattr(m, 'schedule_steps', 0) or m.steps)


def schedule_steps_of_config(config: ml_collections.ConfigDict) -> int:
  """`schedule_steps(config.meta)`: the effective value the workdir identity stores."""
  return schedule_steps(config.meta)
