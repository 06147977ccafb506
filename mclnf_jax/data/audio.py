"""Audio datasets as float32 [N, L] clips in [-1, 1] at 16 kHz: `load_audio`.

Formats (`cfg.name`), clips of L = `cfg.seconds` * 16000 samples:
  * 'audio_folder' (alias 'audio_dir'): the .flac/.wav files under `cfg.root`
    (searched recursively, sorted by path), mono by averaging channels,
    resampled to 16 kHz if needed. If `cfg.root` holds both a `train/` and a
    `test/` folder, each split reads its own; otherwise the last
    max(1, N // 10) files are 'test', the rest 'train'. One random crop per
    file; a file shorter than the clip is an error.
  * 'embedded': eSpeak-NG English sentences (see `embedded_speech`), built once
    into `cfg.root` (default ~/.cache/mclnf_jax/tfds, about 20 s), no download;
    'train' and 'test' use disjoint sentences.

Dataset presets:
  * 'librispeech': TFDS `librispeech` ('train' reads 'train_clean100', 'test'
    reads 'test_clean'), prepared as array_record in `cfg.root` and read by
    random access (`as_data_source`, as `tfds.data_source` does). One random
    crop per utterance; utterances shorter than the clip are skipped (a few
    percent).
    TFDS's `Audio` feature builds a TensorFlow dtype in its constructor, so even
    reading needs TensorFlow (pip install 'mclnf_jax[tf]'); the stored waveform
    itself is raw int16 that `deserialize_example_np` decodes with NumPy. For
    LibriSpeech without TensorFlow use 'audio_folder' on the extracted .flac
    tree (train-clean-100 moved to train/, test-clean to test/).

`cfg.num_signals` > 0 keeps that many clips, drawn without replacement by
`cfg.seed` (in dataset order); 0 keeps the whole split. Crop positions depend
only on `cfg.seed` and the file/utterance, so they are reproducible. Silent
clips are kept (metrics handle them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import dataclasses
import io
import pathlib

import ml_collections
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from mclnf_jax.data import common
from mclnf_jax.data import embedded_speech
from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.errors import UserError

LIBRISPEECH_SPLITS = {'train': 'train_clean100', 'test': 'test_clean'}
AUDIO_SUFFIXES = ('.flac', '.wav')
_INT16_SCALE = 1.0 / 32768.0


@dataclasses.dataclass(frozen=True)
class _Request:
  """The validated fields of the data config, plus the split."""
  name: str
  root: str
  split: str
  length: int  # Samples per clip.
  num_signals: int
  seed: int


def load_audio(cfg: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """Loads `split` of `cfg.name` as float32 [N, L] in [-1, 1] at 16 kHz."""
  request = _parse(cfg, split)
  clips = list(_LOADERS[request.name](request))  # N x [L]
  if not clips:
    return np.zeros((0, request.length), np.float32)
  return np.clip(np.stack(clips), -1.0, 1.0).astype(np.float32)  # [N, L]


def _parse(cfg: ml_collections.ConfigDict, split: str) -> _Request:
  """Checks the config fields and the split; raises UserError on bad values."""
  name, root = common.name_and_root(cfg, split, tuple(_LOADERS), 'audio')
  seconds = common.field(cfg, 'seconds')
  is_number = (isinstance(seconds, (int, float)) and
               not isinstance(seconds, bool))
  if not is_number or seconds <= 0:
    raise UserError(f'data seconds must be a number > 0, got {seconds!r}: pass '
                    '--config.data.seconds=3.0')
  return _Request(name=name,
                  root=root,
                  split=split,
                  length=int(round(seconds * SAMPLE_RATE)),
                  num_signals=common.int_field(cfg, 'num_signals', minimum=0),
                  seed=common.int_field(cfg, 'seed', minimum=0))


def random_crop(wav: np.ndarray, length: int, seed: int,
                key: int) -> np.ndarray:
  """A [length] window of [T] `wav` at an offset fixed by (seed, key)."""
  rng = np.random.default_rng((seed, key))
  offset = rng.integers(0, wav.shape[0] - length + 1)
  return wav[offset:offset + length]


# ----------------------------------------------------------------- embedded --


def _load_embedded(request: _Request) -> Iterator[np.ndarray]:
  """Builds the eSpeak-NG clips once in the data dir, then reads them."""
  root = common.embedded_dir(request.root)
  config = embedded_speech.config_for(request.length / SAMPLE_RATE)
  source = embedded_speech.build(root, config).as_data_source(request.split)
  for i in common.choose_indices(len(source), request.num_signals, request.seed):
    yield np.asarray(source[int(i)]['audio'], np.float32)  # [L]


# -------------------------------------------------------------- librispeech --


def _load_librispeech(request: _Request) -> Iterator[np.ndarray]:
  """Random crops of the LibriSpeech utterances at least a clip long."""
  source = _librispeech_source(request.root, LIBRISPEECH_SPLITS[request.split])
  wanted = request.num_signals or len(source)
  order = np.arange(len(source))
  if request.num_signals:
    order = np.random.default_rng(request.seed).permutation(len(source))
  kept = {}
  for i in order:
    if len(kept) == wanted:
      break
    wav = _speech_array(source[int(i)]['speech'])  # [T]
    if wav.shape[0] >= request.length:
      kept[int(i)] = random_crop(wav, request.length, request.seed, int(i))
  for i in sorted(kept):  # Dataset order, like the other loaders.
    yield kept[i]


def _librispeech_source(root: str, split: str) -> Sequence[dict]:
  """Opens the prepared TFDS split for random access, or says how to."""
  data_dir = root or None
  where = root or '~/tensorflow_datasets'
  build_hint = (f'tfds build librispeech --data_dir={where} '
                '--file_format=array_record')
  try:
    builder = tfds.builder('librispeech', data_dir=data_dir)
  except ImportError as e:
    if 'tensorflow' not in str(e):
      raise
    raise UserError(
        "reading TFDS librispeech needs TensorFlow (its Audio feature imports "
        "it): pip install 'mclnf_jax[tf]', or use --config.data.name=audio_folder "
        'on the extracted LibriSpeech .flac folder') from e
  if split not in builder.info.splits:
    raise UserError(f'TFDS librispeech split {split} not found in {where}: '
                    f'prepare it with `{build_hint}` or set --config.data.root')
  try:
    return builder.as_data_source(split)
  except NotImplementedError as e:
    raise UserError(f'TFDS librispeech in {where} is not array_record: rebuild '
                    f'it with `{build_hint}`') from e


def _speech_array(speech) -> np.ndarray:
  """The 'speech' feature (int16 [T] or lazy_decode flac bytes) as [T]."""
  if isinstance(speech, (bytes, np.bytes_)):
    data = io.BytesIO(bytes(speech))
    wav, rate = sf.read(data, dtype='float32', always_2d=True)  # [T, C]
    return common.resample_to_16k(wav.mean(axis=1), rate)
  return np.asarray(speech, np.float32).reshape(-1) * _INT16_SCALE


# ------------------------------------------------------------- audio_folder --


def _load_audio_folder(request: _Request) -> Iterator[np.ndarray]:
  """Random crops of the split's .flac/.wav files under `root`."""
  files = split_files(audio_files(request.root), request.split, request.root, 'auto')
  for i in common.choose_indices(len(files), request.num_signals, request.seed):
    path = files[int(i)]
    wav = read_audio_file(path)  # [T]
    if wav.shape[0] < request.length:
      raise UserError(
          f'{path} lasts {wav.shape[0] / SAMPLE_RATE:.3f} s, shorter than the '
          f'{request.length / SAMPLE_RATE:g} s clip: remove it or lower '
          '--config.data.seconds')
    yield random_crop(wav, request.length, request.seed, int(i))


def audio_files(root: str) -> list[pathlib.Path]:
  """The sorted .flac/.wav files under `root` (recursively); errors if none."""
  return common.files_under(root, AUDIO_SUFFIXES, 'audio', '.flac or .wav files')


def split_files(files: list[pathlib.Path], split: str, root: str = '',
                rule: str = 'last_tenth') -> list[pathlib.Path]:
  """The files of `split` by `rule`: 'last_tenth' (the last max(1, N // 10) sorted files
  are 'test') or 'auto' (root/train and root/test when both exist)."""
  return common.split_folder_items(root, files, split, 'audio files', rule)


def read_audio_file(path: pathlib.Path) -> np.ndarray:
  """Decodes a file to mono float32 [T] at 16 kHz; names it on failure."""
  try:
    wav, rate = sf.read(str(path), dtype='float32', always_2d=True)  # [T, C]
  except (sf.LibsndfileError, RuntimeError, OSError, EOFError) as e:
    raise UserError(f'cannot read audio file {path} ({common.one_line(e)}): replace or remove '
                    'it') from e
  if not np.isfinite(wav).all():
    raise UserError(f'audio file {path} has NaN or inf samples: replace or remove it')
  if not len(wav):
    raise UserError(f'audio file {path} has no samples: replace or remove it')
  return common.resample_to_16k(wav.mean(axis=1), rate)


_Loader = Callable[[_Request], Iterator[np.ndarray]]
FORMATS: dict[str, _Loader] = {
    'embedded': _load_embedded,
    'audio_folder': _load_audio_folder,
    'audio_dir': _load_audio_folder,   # the earlier name of 'audio_folder'
}
PRESETS: dict[str, _Loader] = {'librispeech': _load_librispeech}
_LOADERS: dict[str, _Loader] = {**FORMATS, **PRESETS}
