"""Video loading: embedded clips, VoxCeleb2-style folders/mp4s, bad inputs."""
import pathlib

import ml_collections
import numpy as np
from PIL import Image
import pytest

from mclnf_jax.data import embedded_video
from mclnf_jax.data import skimage_photos
from mclnf_jax.data import video
from mclnf_jax.errors import UserError
from tests import helpers


def _raises(match: str, cfg, split: str = 'train') -> str:
  """`load_video(cfg, split)` raises a one-line UserError matching `match`."""
  return helpers.one_line_error(match, video.load_video, cfg, split)


def _cfg(**overrides) -> ml_collections.ConfigDict:
  fields = dict(name='embedded',
                root='',
                frames=4,
                resolution=16,
                frame_stride=0,
                num_signals=6,
                seed=0)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def _write_frames(folder: pathlib.Path, levels, size=(40, 30)) -> None:
  """One constant-grey PNG per level, named in frame order."""
  folder.mkdir(parents=True)
  for k, level in enumerate(levels):
    frame = np.full((size[1], size[0], 3), level, np.uint8)
    Image.fromarray(frame).save(folder / f'frame_{k:03d}.png')


def _write_mp4(path: pathlib.Path, levels, size=(64, 48)) -> None:
  """A small H.264 mp4 of constant-grey frames, written with PyAV."""
  av = pytest.importorskip('av')
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), mode='w') as container:
    stream = container.add_stream('libx264', rate=25)
    stream.width, stream.height = size
    stream.pix_fmt = 'yuv420p'
    stream.options = {'qp': '0'}  # Lossless-ish so levels survive.
    for level in levels:
      frame = np.full((size[1], size[0], 3), level, np.uint8)
      for packet in stream.encode(
          av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


# ----------------------------------------------------------------- embedded --


def test_embedded_shapes_range_and_determinism():
  a = video.load_video(_cfg(), 'train')
  assert a.shape == (6, 4, 16, 16, 3) and a.dtype == np.float32
  assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.05
  np.testing.assert_array_equal(a, video.load_video(_cfg(), 'train'))
  assert not np.allclose(a, video.load_video(_cfg(seed=1), 'train'))


def test_embedded_frames_are_temporally_correlated():
  clips = video.load_video(_cfg(num_signals=16, resolution=32), 'train')
  step = np.abs(np.diff(clips, axis=1)).mean()
  across = np.abs(clips[:, 0] - np.roll(clips[:, 0], 1, axis=0)).mean()
  assert 0.0 < step < 0.5 * across
  strided = video.load_video(
      _cfg(num_signals=16, resolution=32, frame_stride=4), 'train')
  assert np.abs(np.diff(strided, axis=1)).mean() > step


def test_embedded_sources_disjoint_and_splits_use_their_own(monkeypatch):
  assert not set(embedded_video.TRAIN_SOURCES) & set(embedded_video.TEST_SOURCES)
  every = set(embedded_video.COLOR_SOURCES) | set(embedded_video.GRAY_SOURCES)
  assert set(embedded_video.TRAIN_SOURCES) | set(embedded_video.TEST_SOURCES) == every
  used = {'train': set(), 'test': set()}
  for split in used:

    def spy(name, rng, request, split=split):
      used[split].add(name)
      return np.zeros(
          (request.frames, request.resolution, request.resolution, 3))

    monkeypatch.setattr(embedded_video, 'render_clip', spy)
    video.load_video(_cfg(num_signals=0), split)
  assert used['train'] == set(embedded_video.TRAIN_SOURCES)
  assert used['test'] == set(embedded_video.TEST_SOURCES)


def test_embedded_sources_are_rgb_in_unit_range():
  for name in embedded_video.COLOR_SOURCES + embedded_video.GRAY_SOURCES:
    image = skimage_photos.photo(name)
    assert image.ndim == 3 and image.shape[-1] == 3, name
    assert 0.0 <= image.min() and image.max() <= 1.0, name


# ---------------------------------------------------------------- voxceleb2 --


def test_frame_folders_order_stride_split_and_resize(tmp_path):
  for c in range(10):
    _write_frames(tmp_path / f'id{c:02d}' / 'clip',
                  [10 * k + c for k in range(8)])
  cfg = _cfg(name='voxceleb2',
             root=str(tmp_path),
             frame_stride=1,
             num_signals=0)
  train, test = video.load_video(cfg, 'train'), video.load_video(cfg, 'test')
  assert train.shape == (9, 4, 16, 16, 3) and test.shape == (1, 4, 16, 16, 3)
  # Clip c, kept frame f is raw frame 2f: level 20f + c; the last clip is test.
  np.testing.assert_allclose(train[3, :, 5, 5, 0] * 255, [3, 23, 43, 63],
                             atol=1e-3)
  np.testing.assert_allclose(test[0, :, 0, 0, 1] * 255, [9, 29, 49, 69],
                             atol=1e-3)


def test_num_signals_draws_a_seeded_subset(tmp_path):
  for c in range(10):
    _write_frames(tmp_path / f'c{c}', [c] * 4)
  cfg = _cfg(name='voxceleb2', root=str(tmp_path), num_signals=3, seed=5)
  first = video.load_video(cfg, 'train')
  assert first.shape[0] == 3
  np.testing.assert_array_equal(first, video.load_video(cfg, 'train'))


def test_mp4_clips_decode_with_pyav(tmp_path):
  for c in range(2):
    _write_mp4(tmp_path / f'v{c}.mp4', [40 * k + 10 * c for k in range(6)])
  cfg = _cfg(name='voxceleb2',
             root=str(tmp_path),
             frames=3,
             frame_stride=1,
             resolution=24,
             num_signals=0)
  train = video.load_video(cfg, 'train')
  assert train.shape == (1, 3, 24, 24, 3)
  assert 0.0 <= train.min() and train.max() <= 1.0
  np.testing.assert_allclose(train[0, :, 12, 12].mean(-1) * 255, [0, 80, 160],
                             atol=4)


def test_missing_and_empty_folders(tmp_path):
  _raises('does not exist',
                  _cfg(name='voxceleb2', root=str(tmp_path / 'x')))
  (tmp_path / 'notes.txt').write_text('hi')
  _raises('no .mp4 files or frame folders',
                  _cfg(name='voxceleb2', root=str(tmp_path)))


def test_clip_with_too_few_frames(tmp_path):
  _write_frames(tmp_path / 'a', [0] * 8)
  _write_frames(tmp_path / 'b', [0] * 2)
  message = _raises('has 2 frames but 4',
                            _cfg(name='voxceleb2', root=str(tmp_path)), 'test')
  assert str(tmp_path / 'b') in message


def test_mixed_frame_sizes(tmp_path):
  _write_frames(tmp_path / 'a', [0] * 4)
  _write_frames(tmp_path / 'b', [0] * 4)
  odd = Image.fromarray(np.zeros((20, 20, 3), np.uint8))
  odd.save(tmp_path / 'a' / 'frame_009.png')
  message = _raises('mixes frame sizes',
                            _cfg(name='voxceleb2', root=str(tmp_path)))
  assert str(tmp_path / 'a') in message


def test_unreadable_frame_and_media_files(tmp_path):
  _write_frames(tmp_path / 'frames' / 'a', [0] * 4)
  _write_frames(tmp_path / 'frames' / 'b', [0] * 4)
  (tmp_path / 'frames' / 'a' / 'frame_000.png').write_bytes(b'not a png')
  _raises('frame_000.png',
                  _cfg(name='voxceleb2', root=str(tmp_path / 'frames')))
  pytest.importorskip('av')
  (tmp_path / 'media').mkdir()
  (tmp_path / 'media' / 'a.mp4').write_bytes(b'\x00garbage' * 100)
  (tmp_path / 'media' / 'b.mp4').write_bytes(b'\x00garbage' * 100)
  _raises('cannot decode media file .*a.mp4',
                  _cfg(name='voxceleb2', root=str(tmp_path / 'media')))


def test_video_folder_reads_train_and_test_folders(tmp_path):
  for c in range(3):
    _write_frames(tmp_path / 'train' / f'id{c}' / 'clip', [c] * 4)
  _write_frames(tmp_path / 'test' / 'clip', [200] * 4)
  cfg = _cfg(name='video_folder', root=str(tmp_path), num_signals=0)
  train, test = video.load_video(cfg, 'train'), video.load_video(cfg, 'test')
  assert train.shape == (3, 4, 16, 16, 3) and test.shape == (1, 4, 16, 16, 3)
  np.testing.assert_allclose(test[0, :, 0, 0, 0] * 255, [200] * 4, atol=1e-3)
  # The voxceleb2 preset splits all four clips by the last tenth instead.
  preset = video.load_video(_cfg(name='voxceleb2', root=str(tmp_path), num_signals=0), 'test')
  np.testing.assert_allclose(preset[0, :, 0, 0, 0] * 255, [2] * 4, atol=1e-3)


def test_video_folder_without_split_folders_is_the_last_tenth(tmp_path):
  for c in range(10):
    _write_frames(tmp_path / f'c{c}', [c] * 4)
  cfg = dict(root=str(tmp_path), num_signals=0)
  np.testing.assert_array_equal(video.load_video(_cfg(name='video_folder', **cfg), 'test'),
                                video.load_video(_cfg(name='voxceleb2', **cfg), 'test'))


def test_bad_config_values():
  _raises('unknown video dataset', _cfg(name='ucf101'))
  _raises('frame_stride must be >= 0', _cfg(frame_stride=-1))
  with pytest.raises(UserError, match='unknown split'):
    video.load_video(_cfg(), 'validation')
