"""Config -> signals: the meta-train and meta-test signals of a split, by modality.

Images, video and audio come as one array [N, *signal_shape] (float32); scenes as a list
of `SceneSignal`s (views of a block, with held-out views for meta-test blocks).

`config.data.name` picks a format (your own data: 'image_folder', 'video_folder',
'audio_folder', 'transforms_json'; or 'embedded') or a dataset preset over one
('ffhq', 'celeb_a', 'imagenette', 'voxceleb2', 'librispeech', 'city', 'matrixcity'):
`DATA_NAMES` lists them per modality, the reader modules document each.

A modality of your own brings its own loader: `register_signals(modality, load)` (called
by `mclnf_jax.tasks.factory.register_modality`) makes `load_signals` return
`load(config, split)` for `config.modality == modality`.
"""
from collections.abc import Callable
from typing import Any

import ml_collections

from mclnf_jax.errors import UserError

# (formats, presets) of config.data.name per built-in modality (see the reader modules).
DATA_NAMES = {
    'image': (('image_folder', 'embedded'), ('ffhq', 'celeb_a', 'imagenette')),
    'video': (('video_folder', 'embedded'), ('voxceleb2',)),
    'audio': (('audio_folder', 'audio_dir', 'embedded'), ('librispeech',)),
    'nerf': (('transforms_json', 'city'), ('matrixcity',)),
}

# config, split -> the split's signals; see `register_signals`.
SignalLoader = Callable[[ml_collections.ConfigDict, str], Any]
_REGISTERED: dict[str, SignalLoader] = {}


def register_signals(modality: str, load: SignalLoader) -> None:
  """Makes `load_signals(config, split)` return `load(config, split)` for
  `config.modality == modality` (registering a name again replaces its loader).

  `load` returns the split's signals: an array [N, ...] (or a list) of the shape the
  modality's `episode` takes, N = `signal_count(config, split)` ('train': meta-train and
  meta-validation signals, the last data.num_val of them validation; 'test': meta-test).
  It should raise `mclnf_jax.errors.UserError` for data a user can fix (printed as one
  line by the CLI)."""
  if modality in DATA_NAMES:
    raise UserError(f'modality {modality!r} is built in: register another name')
  _REGISTERED[modality] = load


def signal_count(config: ml_collections.ConfigDict, split: str) -> int:
  """Signals a split asks for ('train': num_train + num_val, 0 = all; 'test': num_test)."""
  d = config.data
  if split == 'train':
    return d.num_train + d.num_val if d.num_train else 0
  return d.num_test


def load_signals(config: ml_collections.ConfigDict, split: str):
  """All signals of a split ('train': meta-train + meta-validation; 'test')."""
  if config.modality in _REGISTERED:
    return _REGISTERED[config.modality](config, split)
  d = config.data
  data = ml_collections.ConfigDict(d.to_dict())
  data.num_signals = signal_count(config, split)
  if config.modality == 'image':
    from mclnf_jax.data.images import load_images
    return load_images(data, split)
  if config.modality == 'video':
    from mclnf_jax.data.video import load_video
    return load_video(data, split)
  if config.modality == 'audio':
    from mclnf_jax.data.audio import load_audio
    return load_audio(data, split)[..., None]
  if config.modality == 'nerf':
    return scene_signals(config)[split]
  raise UserError(f'unknown config.modality={config.modality!r}')


def scene_signals(config: ml_collections.ConfigDict) -> dict[str, list]:
  """Scene signals of both splits (see data/scenes.py; cached per settings)."""
  from mclnf_jax.data.scenes import scene_signals as load
  return load(config.data.to_dict(), config.scene.to_dict(), tuple(config.tasks.grid))
