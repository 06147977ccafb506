"""Helpers every dataset reader shares: config fields, subsets, splits, crops, errors."""
import math
import os
import pathlib
from typing import NoReturn, Sequence, TypeVar

import ml_collections
import numpy as np
from PIL import Image

from mclnf_jax.errors import UserError

T = TypeVar('T')
SAMPLE_RATE = 16_000  # Hz: every audio clip of the package (datasets and tasks).
DEFAULT_EMBEDDED_ROOT = '~/.cache/mclnf_jax/tfds'  # where embedded datasets are built


def fail(source: str, field: str, fix: str) -> NoReturn:
  """Raises the one-line UserError '<source>: field '<field>': <what is wrong; fix>'."""
  raise UserError(f'{source}: field {field!r}: {fix}')


def one_line(error: BaseException) -> str:
  """The first line of an exception's message, for one-line UserErrors."""
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0]


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


def resize_square(image: np.ndarray | Image.Image, resolution: int,
                  box: tuple[int, int, int] | None = None) -> np.ndarray:
  """Resizes an image (or its (top, left, side) square) to uint8 [R, R, 3].

  Bicubic with PIL's antialiasing; `reducing_gap` first shrinks huge crops by
  box filtering, which is much faster and visually identical.
  """
  pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
  pil_box = None
  if box is not None:
    top, left, side = (int(v) for v in box)
    pil_box = (left, top, left + side, top + side)
  if pil.mode != 'RGB':
    pil = pil.convert('RGB')
  out = pil.resize((resolution, resolution), Image.Resampling.BICUBIC, box=pil_box,
                   reducing_gap=3.0)
  return np.asarray(out, dtype=np.uint8)


def resize_center_square(image: np.ndarray, resolution: int) -> np.ndarray:
  """Centre square crop of uint8 [H, W, 3], antialiased bicubic to [R, R, 3]."""
  square = np.ascontiguousarray(center_square(image))
  if square.shape[0] == resolution:
    return square
  return resize_square(square, resolution)


def resample_to_16k(wav: np.ndarray, rate: int) -> np.ndarray:
  """Polyphase resampling of [T] `wav` from `rate` Hz to SAMPLE_RATE (16 kHz)."""
  if rate == SAMPLE_RATE:
    return wav
  g = math.gcd(rate, SAMPLE_RATE)
  from scipy import signal   # here: importing scipy.signal costs every command 0.7 s
  return signal.resample_poly(wav, SAMPLE_RATE // g, rate // g).astype(np.float32)


def embedded_dir(root: str) -> str:
  """The folder an embedded dataset is built in (`root`, or the default cache), created."""
  root = root or os.path.expanduser(DEFAULT_EMBEDDED_ROOT)
  if os.path.exists(root) and not os.path.isdir(root):
    raise UserError(f'embedded data dir {root} is a file: pass '
                    '--config.data.root=<folder for the built dataset>')
  try:
    os.makedirs(root, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create embedded data dir {root} ({one_line(e)}): pass '
                    '--config.data.root=<writable folder>') from e
  return root


def files_under(root: str, suffixes: Sequence[str], kind: str, what: str) -> list[pathlib.Path]:
  """The sorted files under folder `root` (recursively) whose suffix is one of
  `suffixes` (lower case); errors name the `kind` of folder and `what` it should hold."""
  hint = f'--config.data.root=<folder of {what}>'
  if not root:
    raise UserError(f'{kind} needs a folder: pass {hint}')
  folder = pathlib.Path(root)
  if not folder.is_dir():
    raise UserError(f'{kind} folder {root} does not exist: pass {hint}')
  files = sorted(p for p in folder.rglob('*')
                 if p.is_file() and p.suffix.lower() in suffixes)
  if not files:
    raise UserError(f'{kind} folder {root} has no {what}: add some or point '
                    '--config.data.root elsewhere')
  return files


# Split rules of the folder formats (image_folder, video_folder, audio_folder):
#   'auto':       root/train and root/test when root holds both folders (anything else under
#                 root is ignored), otherwise 'last_tenth';
#   'last_tenth': in sorted path order the last max(1, N // 10) items are 'test', the rest
#                 'train' (the dataset presets: FFHQ's 70,000 files give 63,000 / 7,000).
SPLIT_RULES = ('auto', 'last_tenth')
SPLIT_FOLDERS = ('train', 'test')


def has_split_folders(root: str) -> bool:
  """Whether folder `root` holds both a `train` and a `test` folder."""
  return all(os.path.isdir(os.path.join(root, name)) for name in SPLIT_FOLDERS)


def split_folder_items(root: str, items: Sequence[pathlib.Path], split: str, what: str,
                       rule: str = 'auto') -> list[pathlib.Path]:
  """The items (sorted paths under `root`) of `split` by `rule` (see SPLIT_RULES)."""
  if rule not in SPLIT_RULES:
    raise ValueError(f'unknown split rule {rule!r}')
  if rule == 'last_tenth' or not has_split_folders(root):
    return split_last_tenth(items, split, what)
  base = pathlib.Path(root, split)
  chosen = [p for p in items if p.is_relative_to(base) and p != base]
  if not chosen:
    raise UserError(f'{base} has no {what} ({root} has train/ and test/ folders, so each '
                    'split reads its own): add some, or remove the train/ and test/ '
                    'folders to split the sorted files by the last-tenth rule')
  return chosen


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
