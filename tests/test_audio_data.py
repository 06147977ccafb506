"""Audio loading: embedded speech, audio folders, LibriSpeech, bad inputs."""
import importlib.util
import pathlib
import types

import ml_collections
import numpy as np
import pytest
import soundfile as sf

from mclnf_jax.data import audio
from mclnf_jax.data import embedded_speech
from mclnf_jax.data import espeak
from mclnf_jax.errors import UserError
from tests import helpers

_HAS_ESPEAK = importlib.util.find_spec('espeakng_loader') is not None
needs_espeak = pytest.mark.skipif(not _HAS_ESPEAK,
                                  reason='espeakng-loader is not installed')

# One voice and one setting: 60 clips, about two seconds to build.
_TINY = embedded_speech.EmbeddedSpeechConfig(name='test_tiny_500ms',
                                             seconds=0.5,
                                             voices=('en-us',),
                                             settings=((175, 50),))


def _raises(match: str, cfg, split: str = 'train') -> str:
  """`load_audio(cfg, split)` raises a one-line UserError matching `match`."""
  return helpers.one_line_error(match, audio.load_audio, cfg, split)


def _cfg(**overrides) -> ml_collections.ConfigDict:
  fields = dict(name='embedded', root='', seconds=0.5, num_signals=0, seed=0)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


@pytest.fixture(scope='module')
def tiny_speech(tmp_path_factory) -> tuple[str, embedded_speech.EmbeddedSpeech]:
  root = str(tmp_path_factory.mktemp('tfds'))
  return root, embedded_speech.build(root, _TINY)


# ----------------------------------------------------------------- embedded --


@needs_espeak
def test_embedded_builder_splits_use_disjoint_sentences(tiny_speech):
  _, builder = tiny_speech
  ids = {}
  for split in ('train', 'test'):
    source = builder.as_data_source(split)
    ids[split] = {int(source[i]['sentence_id']) for i in range(len(source))}
    clip = source[0]['audio']
    assert clip.shape == (8000,) and clip.dtype == np.float32
    assert np.abs(clip).max() == pytest.approx(0.95, abs=1e-4)
  assert len(ids['train']) == 48 and len(ids['test']) == 12
  assert not ids['train'] & ids['test']


@needs_espeak
def test_load_embedded_shapes_subset_and_determinism(tiny_speech, monkeypatch):
  root, _ = tiny_speech
  monkeypatch.setattr(embedded_speech, 'config_for', lambda seconds: _TINY)
  test = audio.load_audio(_cfg(root=root), 'test')
  assert test.shape == (12, 8000) and test.dtype == np.float32
  assert np.abs(test).max() <= 1.0 and (np.abs(test) > 0.01).mean() > 0.3
  subset = audio.load_audio(_cfg(root=root, num_signals=5, seed=3), 'train')
  assert subset.shape == (5, 8000)
  np.testing.assert_array_equal(
      subset, audio.load_audio(_cfg(root=root, num_signals=5, seed=3), 'train'))


@needs_espeak
def test_synthesis_is_speech_at_16k_and_voices_differ():
  a = espeak.synthesize('Hello there, how are you today?', 'en-us',
                                 175, 50)
  b = espeak.synthesize('Hello there, how are you today?',
                                 'en-gb-x-rp+f2', 175, 50)
  assert 0.8 < a.shape[0] / 16000 < 4.0 and np.abs(a).max() > 0.05
  assert a.shape != b.shape or not np.allclose(a, b)
  spectrum = np.abs(np.fft.rfft(a))
  peak_hz = np.argmax(spectrum) * 16000 / a.shape[0]
  assert 60 < peak_hz < 4000  # Voiced speech energy, not noise or DC.


def test_to_clip_cuts_pads_and_normalises():
  ramp = np.linspace(-0.2, 0.4, 500)
  wav = np.concatenate([np.zeros(100), ramp, np.zeros(100)])
  clip = embedded_speech.to_clip(wav.astype(np.float32), 800)
  assert clip.shape == (800,) and np.abs(clip).max() == pytest.approx(0.95)
  assert np.all(clip[500:] == 0.0)
  silent = embedded_speech.to_clip(np.zeros(10, np.float32), 4)
  assert silent.tolist() == [0] * 4
  assert embedded_speech.to_clip(wav.astype(np.float32), 50).shape == (50,)


@needs_espeak
def test_missing_libespeak_is_a_user_error(monkeypatch):
  import espeakng_loader  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(espeakng_loader, 'get_library_path',
                      lambda: '/nope/libx.so')
  with pytest.raises(UserError, match='cannot load libespeak-ng'):
    espeak._load_library()


# ---------------------------------------------------------------- audio_dir --


def _write_tone(path: pathlib.Path,
                seconds: float,
                rate: int = 16000,
                channels: int = 1,
                hz: float = 440.0) -> None:
  t = np.arange(int(seconds * rate)) / rate
  tone = 0.5 * np.sin(2 * np.pi * hz * t)
  path.parent.mkdir(parents=True, exist_ok=True)
  sf.write(str(path), np.stack([tone] * channels, axis=1), rate)


def test_audio_dir_split_crop_and_resample(tmp_path):
  for i in range(9):
    _write_tone(tmp_path / 'spk' / f'{i:02d}.flac', 1.0, hz=200 + 50 * i)
  _write_tone(tmp_path / 'spk' / '99.wav', 1.0, rate=22050, channels=2, hz=440)
  cfg = _cfg(name='audio_dir', root=str(tmp_path))
  train, test = audio.load_audio(cfg, 'train'), audio.load_audio(cfg, 'test')
  assert train.shape == (9, 8000) and test.shape == (1, 8000)
  assert np.abs(train).max() <= 1.0
  peak_hz = np.argmax(np.abs(np.fft.rfft(test[0]))) * 16000 / 8000
  # The 22.05 kHz stereo file came back as 16 kHz mono.
  assert peak_hz == pytest.approx(440, abs=4)
  np.testing.assert_array_equal(train, audio.load_audio(cfg, 'train'))
  assert not np.allclose(
      train,
      audio.load_audio(_cfg(name='audio_dir', root=str(tmp_path), seed=1),
                       'train'))


def test_audio_dir_silent_file_is_allowed(tmp_path):
  sf.write(str(tmp_path / 'a.wav'), np.zeros(16000), 16000)
  sf.write(str(tmp_path / 'b.wav'), np.zeros(16000), 16000)
  assert not audio.load_audio(_cfg(name='audio_dir', root=str(tmp_path)),
                              'train').any()


def test_audio_dir_bad_inputs(tmp_path):
  _raises('does not exist',
                  _cfg(name='audio_dir', root=str(tmp_path / 'x')))
  (tmp_path / 'empty').mkdir()
  _raises('no .flac or .wav',
                  _cfg(name='audio_dir', root=str(tmp_path / 'empty')))
  _write_tone(tmp_path / 'one' / 'a.wav', 1.0)
  _raises('at least 2',
                  _cfg(name='audio_dir', root=str(tmp_path / 'one')))
  _write_tone(tmp_path / 'short' / 'a.wav', 1.0)
  _write_tone(tmp_path / 'short' / 'b.wav', 0.25)
  _raises(r'b.wav lasts 0.250 s, shorter than the 0.5 s clip',
                  _cfg(name='audio_dir', root=str(tmp_path / 'short')), 'test')
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'a.flac').write_bytes(b'fLaC but not really' * 10)
  _write_tone(tmp_path / 'bad' / 'b.wav', 1.0)
  _raises('cannot read audio file .*a.flac',
                  _cfg(name='audio_dir', root=str(tmp_path / 'bad')))


def test_audio_folder_reads_train_and_test_folders(tmp_path):
  for i in range(3):
    _write_tone(tmp_path / 'train' / f'spk{i}' / 'a.wav', 1.0, hz=200 + 100 * i)
  _write_tone(tmp_path / 'test' / 'b.flac', 1.0, hz=1000)
  cfg = _cfg(name='audio_folder', root=str(tmp_path))
  train, test = audio.load_audio(cfg, 'train'), audio.load_audio(cfg, 'test')
  assert train.shape == (3, 8000) and test.shape == (1, 8000)
  peak_hz = np.argmax(np.abs(np.fft.rfft(test[0]))) * 16000 / 8000
  assert peak_hz == pytest.approx(1000, abs=4)


def test_audio_dir_is_an_alias_of_audio_folder(tmp_path):
  for i in range(4):
    _write_tone(tmp_path / f'{i}.wav', 1.0, hz=200 + 100 * i)
  for split in ('train', 'test'):
    np.testing.assert_array_equal(
        audio.load_audio(_cfg(name='audio_dir', root=str(tmp_path)), split),
        audio.load_audio(_cfg(name='audio_folder', root=str(tmp_path)), split))


# -------------------------------------------------------------- librispeech --


class _FakeBuilder:
  """Stands in for tfds.builder('librispeech'): int16 speech of 0.3-1.2 s."""

  def __init__(self, splits):
    self.info = types.SimpleNamespace(splits=splits)

  def as_data_source(self, split):
    rng = np.random.default_rng(len(split))
    lengths = [4800, 19200, 12000, 6000, 16000, 9600]  # Two under 0.5 s.
    speech = [(rng.standard_normal(n) * 3000).astype(np.int16) for n in lengths]
    return [{'speech': s} for s in speech]


def test_librispeech_crops_long_utterances(monkeypatch):
  asked = []

  def fake_builder(name, data_dir=None):
    asked.append((name, data_dir))
    return _FakeBuilder({'train_clean100': 1, 'test_clean': 1})

  monkeypatch.setattr(audio.tfds, 'builder', fake_builder)
  cfg = _cfg(name='librispeech', root='/data/tfds')
  clips = audio.load_audio(cfg, 'test')
  assert clips.shape == (4, 8000) and np.abs(clips).max() <= 1.0
  assert asked[0] == ('librispeech', '/data/tfds')
  np.testing.assert_array_equal(clips, audio.load_audio(cfg, 'test'))
  two = audio.load_audio(_cfg(name='librispeech', num_signals=2, seed=4),
                         'train')
  assert two.shape == (2, 8000) and np.abs(two).max() > 0.05


def test_librispeech_errors(monkeypatch):
  cfg = _cfg(name='librispeech', root='/data/tfds')
  monkeypatch.setattr(audio.tfds, 'builder',
                      lambda *a, **k: _FakeBuilder({'test_clean': 1}))
  _raises('split train_clean100 not found', cfg)

  def tfrecord_builder(*args, **kwargs):
    builder = _FakeBuilder({'train_clean100': 1})
    builder.as_data_source = lambda split: (_ for _ in ()).throw(
        NotImplementedError('tfrecord'))
    return builder

  monkeypatch.setattr(audio.tfds, 'builder', tfrecord_builder)
  _raises('not array_record', cfg)

  def no_tf(*args, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'")

  monkeypatch.setattr(audio.tfds, 'builder', no_tf)
  _raises(r"mclnf_jax\[tf\]", cfg)


@pytest.mark.skipif(importlib.util.find_spec('tensorflow') is not None,
                    reason='TensorFlow is installed')
def test_real_tfds_librispeech_without_tensorflow_says_so(tmp_path):
  _raises(r"needs TensorFlow.*mclnf_jax\[tf\]",
                  _cfg(name='librispeech', root=str(tmp_path)))


def test_bad_config_values():
  _raises('unknown audio dataset', _cfg(name='timit'))
  _raises('seconds must be a number > 0', _cfg(seconds=0))
  _raises('num_signals must be >= 0', _cfg(num_signals=-2))
  with pytest.raises(UserError, match='unknown split'):
    audio.load_audio(_cfg(), 'valid')


def test_audio_dir_8khz_stereo_nan_and_empty_files(tmp_path):
  """8 kHz stereo is resampled to 16 kHz mono; a file with NaN/inf samples or no samples
  is a one-line error naming it."""
  _write_tone(tmp_path / 'ok' / 'a.wav', 1.0, rate=8000, channels=2, hz=300)
  _write_tone(tmp_path / 'ok' / 'b.wav', 1.0, rate=8000, channels=1, hz=500)
  out = audio.load_audio(_cfg(name='audio_dir', root=str(tmp_path / 'ok')), 'train')
  assert out.shape == (1, 8000) and np.isfinite(out).all()
  (tmp_path / 'nan').mkdir()
  wave = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
  wave[100] = np.nan
  sf.write(str(tmp_path / 'nan' / 'a.wav'), wave, 16000, subtype='FLOAT')
  sf.write(str(tmp_path / 'nan' / 'b.wav'), wave, 16000, subtype='FLOAT')
  _raises('a.wav.*(NaN|finite)', _cfg(name='audio_dir', root=str(tmp_path / 'nan')))
  (tmp_path / 'empty').mkdir()
  sf.write(str(tmp_path / 'empty' / 'a.wav'), np.zeros(0), 16000)
  sf.write(str(tmp_path / 'empty' / 'b.wav'), np.zeros(0), 16000)
  _raises('a.wav', _cfg(name='audio_dir', root=str(tmp_path / 'empty')))
