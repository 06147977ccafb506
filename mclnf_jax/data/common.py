"""Helpers every dataset reader shares: config fields, subsets, splits, crops."""
import os
from typing import Sequence, TypeVar

import ml_collections
import numpy as np

from mclnf_jax.errors import UserError

T = TypeVar('T')


def field(cfg: ml_collections.ConfigDict, key: str):
  """Returns `cfg[key]`, or a UserError naming the missing field."""
  if key not in cfg:
    raise UserError(f'data config has no field {key!r}: add it, e.g. '
                    f'--config.data.{key}=...')
  return cfg[key]


def int_field(cfg: ml_collections.ConfigDict, key: str, minimum: int) -> int:
  """Returns an integer field that must be >= `minimum`."""
  value = field(cfg, key)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise UserError(f'data {key} must be an integer, got {value!r}: pass '
                    f'--config.data.{key}=<integer >= {minimum}>')
  if value < minimum:
    raise UserError(f'data {key} must be >= {minimum}, got {value}: pass '
                    f'--config.data.{key}=<integer >= {minimum}>')
  return int(value)


def choose_indices(count: int, num_signals: int, seed: int) -> np.ndarray:
  """Picks `num_signals` of `count` indices (all when 0), sorted, by `seed`."""
  if num_signals == 0 or num_signals >= count:
    return np.arange(count)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(count, size=num_signals, replace=False))


def center_square(image: np.ndarray) -> np.ndarray:
  """Crops the largest centred square of an [H, W, ...] image."""
  height, width = image.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  return image[top:top + side, left:left + side]


def split_last_tenth(items: Sequence[T], split: str, what: str) -> list[T]:
  """The deterministic split of a sorted folder: the last max(1, N // 10) items are
  'test', the rest 'train'. `what` names the items in the error (e.g. 'audio files')."""
  if len(items) < 2:
    raise UserError(f'{len(items)} {what} found; train and test need at least 2: '
                    'add more or point --config.data.root elsewhere')
  num_test = max(1, len(items) // 10)
  return list(items[-num_test:] if split == 'test' else items[:-num_test])


def name_and_root(cfg: ml_collections.ConfigDict, split: str, names: Sequence[str],
                  kind: str) -> tuple[str, str]:
  """The checked (dataset name, data root) of a request for `split` ('train'/'test')."""
  name = field(cfg, 'name')
  if not isinstance(name, str) or name not in names:
    raise UserError(f'unknown {kind} dataset {name!r}: pass --config.data.name=one of '
                    f'{", ".join(names)}')
  if split not in ('train', 'test'):
    raise UserError(f'unknown split {split!r}: use train or test')
  root = field(cfg, 'root')
  if not isinstance(root, str):
    raise UserError(f'data root must be a path string, got {root!r}: pass '
                    '--config.data.root=<folder>')
  return name, os.path.expanduser(root)
