"""Tests of the image datasets: embedded builder, TFDS loaders, FFHQ folders."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys

from etils import epath
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from mclnf_jax.data import common
from mclnf_jax.data import embedded_images
from mclnf_jax.data import images
from mclnf_jax.errors import UserError
from tests import helpers

RES = 16  # Tiny, so building the embedded dataset takes about a second.
CROPS = 4


def _raises(match: str, cfg, split: str = 'train') -> str:
  """`load_images(cfg, split)` raises a one-line UserError matching `match`."""
  return helpers.one_line_error(match, images.load_images, cfg, split)


def _cfg(**overrides) -> ml_collections.ConfigDict:
  """A data config with the fields `load_images` reads."""
  fields = dict(name='embedded', root='', resolution=RES, num_signals=0,
                seed=0, crops_per_source=CROPS)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def _check_unit_images(x: np.ndarray, count: int, res: int) -> None:
  """Checks the float32 [N, R, R, 3] in [0, 1] contract."""
  assert x.shape == (count, res, res, 3)
  assert x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.slow
def test_building_and_reading_embedded_images_never_imports_tensorflow(tmp_path):
  """TFDS's array_record path needs no TensorFlow: in a fresh process that loads the
  embedded images, `tensorflow` is never imported (installed or not)."""
  code = ('import sys; from tests.test_image_data import _cfg; '
          'from mclnf_jax.data import images; '
          f'x = images.load_images(_cfg(root={str(tmp_path)!r}), "test"); '
          'assert x.shape[1:] == (16, 16, 3), x.shape; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=300, cwd=pathlib.Path(__file__).resolve().parents[1])
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == '[]'


# ----------------------------------------------------------------- embedded --


@pytest.fixture(scope='module')
def embedded_root(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def embedded_builder(embedded_root) -> embedded_images.EmbeddedImages:
  return embedded_images.build(embedded_root, RES, CROPS, seed=0)


def test_embedded_source_lists_are_disjoint():
  train = set(embedded_images.source_names('train'))
  test = set(embedded_images.source_names('test'))
  assert not train & test
  assert train | test == set(embedded_images.SOURCE_NAMES)
  assert {'astronaut', 'coffee', 'rocket', 'chelsea'} <= test


def test_embedded_splits_use_disjoint_sources_and_crops(embedded_builder):
  def read(split):
    source = embedded_builder.as_data_source(split)
    return source.__getitems__(list(range(len(source))))

  train, test = read('train'), read('test')
  names = embedded_images.SOURCE_NAMES
  train_sources = {names[int(ex['source'])] for ex in train}
  test_sources = {names[int(ex['source'])] for ex in test}
  assert test_sources == set(embedded_images.TEST_SOURCES)
  assert not train_sources & test_sources
  train_bytes = {ex['image'].tobytes() for ex in train}
  assert not any(ex['image'].tobytes() in train_bytes for ex in test)
  num_large = len(embedded_images.LARGE_SOURCES)
  num_lfw = len(embedded_images.LFW_SOURCES)
  assert len(train) + len(test) == num_large * CROPS + num_lfw


def test_embedded_load_images_shape_range_and_determinism(embedded_root):
  cfg = _cfg(root=embedded_root)
  train = images.load_images(cfg, 'train')
  test = images.load_images(cfg, 'test')
  _check_unit_images(test, 4 * CROPS + 20, RES)
  assert train.shape[1:] == (RES, RES, 3) and train.dtype == np.float32
  np.testing.assert_array_equal(train, images.load_images(cfg, 'train'))
  subset_cfg = _cfg(root=embedded_root, num_signals=7)
  subset = images.load_images(subset_cfg, 'test')
  _check_unit_images(subset, 7, RES)
  np.testing.assert_array_equal(subset, images.load_images(subset_cfg, 'test'))


def test_embedded_build_is_deterministic_per_seed(embedded_root, tmp_path):
  seed0 = images.load_images(_cfg(root=embedded_root, seed=0), 'test')
  rebuilt = images.load_images(_cfg(root=str(tmp_path), seed=0), 'test')
  seed1 = images.load_images(_cfg(root=embedded_root, seed=1), 'test')
  np.testing.assert_array_equal(seed0, rebuilt)
  assert seed0.shape == seed1.shape
  assert not np.array_equal(seed0, seed1)


def test_embedded_default_root_is_the_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(common, 'DEFAULT_EMBEDDED_ROOT', str(tmp_path / 'cache'))
  x = images.load_images(_cfg(root='', resolution=8, num_signals=5), 'test')
  _check_unit_images(x, 5, 8)
  assert (tmp_path / 'cache' / 'embedded_images').is_dir()


def test_embedded_root_is_a_file(tmp_path):
  (tmp_path / 'file').write_text('')
  _raises(r'embedded data dir .*file is a file',
          _cfg(root=str(tmp_path / 'file')))


def test_embedded_rejects_bad_builder_sizes(tmp_path):
  with pytest.raises(UserError, match='crops_per_source must be an integer'):
    embedded_images.build(str(tmp_path), RES, crops_per_source=0)


# ---------------------------------------------------------- TFDS: mock data --


def test_celeb_a_mock_is_center_cropped_and_padded(tmp_path):
  cfg = _cfg(name='celeb_a', root=str(tmp_path), resolution=180, num_signals=3)
  with tfds.testing.mock_data(num_examples=5):
    x = images.load_images(cfg, 'test')
    raw = tfds.data_source('celeb_a', data_dir=str(tmp_path), split='test')
    raw_images = [raw[int(i)]['image'] for i in common.choose_indices(5, 3, 0)]
  _check_unit_images(x, 3, 180)
  assert not x[:, 0].any() and not x[:, -1].any()
  assert not x[:, :, 0].any() and not x[:, :, -1].any()
  want = np.stack([r[20:198] for r in raw_images]).astype(np.float32) / 255
  np.testing.assert_allclose(x[:, 1:-1, 1:-1], want, atol=1e-6)


def test_imagenette_mock_resizes_and_reads_validation_for_test(
    tmp_path, monkeypatch):
  splits = []
  original = tfds.data_source

  def spy(name, **kwargs):
    splits.append(kwargs['split'])
    return original(name, **kwargs)

  monkeypatch.setattr(images.tfds, 'data_source', spy)
  with tfds.testing.mock_data(num_examples=6):
    x = images.load_images(_cfg(name='imagenette', root=str(tmp_path)), 'test')
  _check_unit_images(x, 6, RES)
  assert splits == ['validation']


def test_celeb_a_rejects_other_resolutions(tmp_path):
  _raises(r'--config\.data\.resolution=180',
          _cfg(name='celeb_a', root=str(tmp_path), resolution=64))


# ------------------------------------------------- TFDS: real array_record --


class CelebA(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """celeb_a as stored on disk: array_record of PNG-encoded 218x178 images."""

  VERSION = tfds.core.Version('2.1.0')
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Image(shape=(218, 178, 3), encoding_format='png')
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({'image': image}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(3),
            'test': self._generate_examples(2)}

  def _generate_examples(self, count):
    for i in range(count):
      buffer = io.BytesIO()
      Image.fromarray(np.full((218, 178, 3), 40 * i + 10, np.uint8)).save(
          buffer, format='PNG')
      yield i, {'image': buffer.getvalue()}  # Bytes: encoding needs no TF.


def _prepare_celeb_a(root) -> None:
  CelebA(data_dir=str(root), file_format='array_record').download_and_prepare()


def test_celeb_a_reads_real_array_record_files(tmp_path):
  _prepare_celeb_a(tmp_path)
  x = images.load_images(
      _cfg(name='celeb_a', root=str(tmp_path), resolution=180), 'train')
  _check_unit_images(x, 3, 180)
  centres = sorted(np.round(x[:, 90, 90, 0] * 255).astype(int))
  assert centres == [10, 50, 90]


def test_tfds_dataset_missing_from_data_dir(tmp_path):
  error = _raises('TFDS dataset celeb_a is not prepared in',
                  _cfg(name='celeb_a', root=str(tmp_path), resolution=180))
  assert 'tfds build celeb_a' in str(error)
  assert '--config.data.root' in str(error)


def test_tfds_dataset_stored_as_tfrecord(tmp_path):
  _prepare_celeb_a(tmp_path)  # Then relabel it, as writing tfrecord needs TF.
  info_path = tmp_path / 'celeb_a' / '2.1.0' / 'dataset_info.json'
  info = json.loads(info_path.read_text())
  info['fileFormat'] = 'tfrecord'
  info_path.write_text(json.dumps(info))
  error = _raises('stored as tfrecord, but random access needs array_record',
                  _cfg(name='celeb_a', root=str(tmp_path), resolution=180))
  assert 'tfds convert_format' in str(error)


def test_tfds_data_dir_missing(tmp_path):
  _raises(r'TFDS data dir .*nope does not exist: pass --config\.data\.root=',
          _cfg(name='imagenette', root=str(tmp_path / 'nope')))


# --------------------------------------------------------------------- ffhq --


def _write(folder, name: str, value: int, size=(24, 20)) -> None:
  """Writes a constant image of `value` with (width, height) `size`."""
  array = np.full((size[1], size[0], 3), value, np.uint8)
  Image.fromarray(array).save(os.path.join(folder, name))


@pytest.fixture
def ffhq_root(tmp_path) -> str:
  for i in range(11):
    _write(tmp_path, f'{i:05d}.png', 10 * i)
  _write(tmp_path, '00011.jpg', 200)
  (tmp_path / 'LICENSE.txt').write_text('not an image')
  return str(tmp_path)


def test_ffhq_split_is_last_tenth_and_resized(ffhq_root):
  cfg = _cfg(name='ffhq', root=ffhq_root)
  train = images.load_images(cfg, 'train')
  test = images.load_images(cfg, 'test')
  _check_unit_images(train, 11, RES)
  _check_unit_images(test, 1, RES)
  np.testing.assert_allclose(
      train[:, 0, 0, 0] * 255, 10 * np.arange(11), atol=1e-3)
  assert abs(test.mean() * 255 - 200) < 3  # JPEG is lossy.
  subset_cfg = _cfg(name='ffhq', root=ffhq_root, num_signals=4)
  subset = images.load_images(subset_cfg, 'train')
  _check_unit_images(subset, 4, RES)
  np.testing.assert_array_equal(subset, images.load_images(subset_cfg, 'train'))


def test_ffhq_missing_directory(tmp_path):
  _raises(r'FFHQ folder .*nope does not exist: pass --config\.data\.root=',
          _cfg(name='ffhq', root=str(tmp_path / 'nope')))


def test_ffhq_empty_directory(tmp_path):
  _raises(r'FFHQ folder .* has no \.png/\.jpg images', _cfg(name='ffhq', root=str(tmp_path)))


def test_ffhq_empty_file(ffhq_root):
  epath.Path(ffhq_root, '0000_empty.png').write_bytes(b'')
  _raises(r'image file .*0000_empty\.png is empty',
          _cfg(name='ffhq', root=ffhq_root))


@pytest.mark.parametrize('content', [b'not an image at all', 'truncated'])
def test_ffhq_unreadable_file(ffhq_root, content):
  if content == 'truncated':
    content = epath.Path(ffhq_root, '00001.png').read_bytes()[:60]
  epath.Path(ffhq_root, '0000_bad.png').write_bytes(content)
  _raises(r'cannot read image file .*0000_bad\.png',
          _cfg(name='ffhq', root=ffhq_root))


def test_ffhq_image_smaller_than_resolution(ffhq_root):
  _write(ffhq_root, '0000_small.png', 0, size=(12, 9))
  _raises(r'image .*0000_small\.png is 12x9, smaller than the requested 16x16',
          _cfg(name='ffhq', root=ffhq_root))


def test_image_folder_reads_train_and_test_folders_recursively(tmp_path):
  for i in range(3):
    os.makedirs(tmp_path / 'train' / f'part{i}')
    _write(tmp_path / 'train' / f'part{i}', 'a.png', 10 * i)
  os.makedirs(tmp_path / 'test')
  _write(tmp_path / 'test', 'z.png', 250)
  _write(tmp_path, 'ignored.png', 99)            # beside train/ and test/: in neither
  cfg = _cfg(name='image_folder', root=str(tmp_path))
  train, test = images.load_images(cfg, 'train'), images.load_images(cfg, 'test')
  _check_unit_images(train, 3, RES)
  np.testing.assert_allclose(train[:, 0, 0, 0] * 255, [0, 10, 20], atol=1e-3)
  np.testing.assert_allclose(test[:, 0, 0, 0] * 255, [250], atol=1e-3)


def test_image_folder_without_split_folders_is_the_last_tenth(ffhq_root):
  cfg = _cfg(name='image_folder', root=ffhq_root)
  for split in ('train', 'test'):
    np.testing.assert_array_equal(images.load_images(cfg, split),
                                  images.load_images(_cfg(name='ffhq', root=ffhq_root), split))


def test_ffhq_preset_ignores_split_folders(tmp_path):
  for folder in ('train', 'test'):
    os.makedirs(tmp_path / folder)
    for i in range(5):
      _write(tmp_path / folder, f'{i}.png', i)
  cfg = _cfg(name='ffhq', root=str(tmp_path))
  assert len(images.load_images(cfg, 'test')) == 1       # the last tenth of all 10
  assert len(images.load_images(_cfg(name='image_folder', root=str(tmp_path)), 'test')) == 5


def test_image_folder_empty_split_folder(tmp_path):
  os.makedirs(tmp_path / 'train')
  os.makedirs(tmp_path / 'test')
  _write(tmp_path / 'train', 'a.png', 0)
  _raises(r'test has no \.png/\.jpg images .*train/ and test/ folders',
          _cfg(name='image_folder', root=str(tmp_path)), 'test')


# ------------------------------------------------------------------ config --


def test_unknown_dataset_name():
  _raises(r"unknown image dataset 'mnist': pass --config\.data\.name=one of embedded",
          _cfg(name='mnist'))


def test_unknown_split(ffhq_root):
  _raises("unknown split 'val'", _cfg(name='ffhq', root=ffhq_root), split='val')


def test_bad_config_values():
  _raises('resolution must be >= 1', _cfg(resolution=0))
  _raises('num_signals must be an integer', _cfg(num_signals=1.5))
  cfg = _cfg()
  del cfg['root']
  _raises("data config has no field 'root'", cfg)


@pytest.mark.parametrize('mode, dtype, value', [('L', np.uint8, 128), ('RGBA', np.uint8, 128),
                                                ('I;16', np.uint16, 40000)])
def test_image_folder_converts_grey_rgba_and_16_bit_to_rgb(tmp_path, mode, dtype, value):
  """Documented conversion: every image becomes RGB in [0, 1] (PIL convert('RGB'))."""
  for i in range(11):
    shape = (20, 24) if mode != 'RGBA' else (20, 24, 4)
    Image.fromarray(np.full(shape, value, dtype)).save(tmp_path / f'{i:05d}.png')
  out = images.load_images(_cfg(name='image_folder', root=str(tmp_path)), 'train')
  assert out.shape[-1] == 3 and out.dtype == np.float32
  assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
