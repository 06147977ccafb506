"""Your own data, by format: a folder of images ('image_folder'), of clips
('video_folder'), of audio files ('audio_folder') runs from the command line with
`--config.data.name=<format> --config.data.root=<folder>` (the 'transforms_json' scene
folders: tests/test_data_scenes.py::test_cli_runs_on_transforms_json_scenes). The dataset
names are presets over these formats."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import soundfile

from mclnf_jax.data import audio, images, scenes, signals, video
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {'learners': 'modular', 'methods.modular.width': 8, 'field.depth': 3,
        'meta.steps': 2, 'meta.batch_size': 2, 'meta.inner_steps': 1, 'meta.val_every': 1,
        'meta.log_every': 1, 'meta.save_every': 2, 'eval.max_steps': 2,
        'eval.batch_size': 2, 'eval.num_shown': 1, 'data.num_val': 2, 'data.num_test': 2}


def test_every_data_name_is_a_format_or_a_preset_of_its_reader():
  readers = {'image': images._LOADERS, 'video': video._LOADERS, 'audio': audio._LOADERS,
             'nerf': dict.fromkeys(scenes.SCENE_DATASETS)}
  for modality, (formats, presets) in signals.DATA_NAMES.items():
    assert set(formats) | set(presets) == set(readers[modality]), modality
  assert set(images.FORMATS) == {'embedded', 'image_folder'}
  assert set(video.FORMATS) == {'embedded', 'video_folder'}
  assert set(audio.FORMATS) == {'embedded', 'audio_folder', 'audio_dir'}


def write_images(root, n_train=6, n_test=2, size=16):
  """Smooth 16x16 PNGs in train/ and test/ folders (each split reads its own)."""
  pictures = np.round(helpers.smooth_images(n_train + n_test, size=size) * 255)
  for i, picture in enumerate(pictures.astype(np.uint8)):
    folder = root / ('train' if i < n_train else 'test')
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(folder / f'{i:03d}.png')


def write_frame_folders(root, clips=10, frames=4, size=16):
  """One folder of PNG frames per clip, a moving gradient; no split folders, so the last
  tenth (1 clip) is meta-test."""
  pictures = helpers.smooth_images(clips + frames, size=size)
  for c in range(clips):
    folder = root / f'speaker{c % 3}' / f'clip{c:02d}'
    folder.mkdir(parents=True)
    for f in range(frames):
      Image.fromarray(np.round(pictures[c + f] * 255).astype(np.uint8)).save(
          folder / f'frame_{f:03d}.png')


def write_wavs(root, n_train=5, n_test=2, seconds=0.5, rate=16_000):
  """Enveloped chirps at 16 kHz in train/ and test/ folders."""
  t = np.arange(int(seconds * rate)) / rate
  for i in range(n_train + n_test):
    folder = root / ('train' if i < n_train else 'test') / f'speaker{i % 2}'
    folder.mkdir(parents=True, exist_ok=True)
    wave = 0.5 * np.sin(2 * np.pi * (200 + 40 * i) * t * (1 + t)) * np.sin(np.pi * t / seconds)
    soundfile.write(folder / f'clip_{i:02d}.wav', wave.astype(np.float32), rate)


CASES = {
    'image_folder': ('configs/image_ffhq.py:cpu', write_images,
                     {'data.resolution': 16}),
    'video_folder': ('configs/video_voxceleb2.py:cpu', write_frame_folders,
                     {'data.resolution': 16, 'data.frames': 4, 'data.frame_stride': 0}),
    'audio_folder': ('configs/audio_librispeech.py:cpu', write_wavs,
                     {'data.seconds': 0.5}),
}


@pytest.mark.slow
@pytest.mark.parametrize('data_format', sorted(CASES))
def test_cli_runs_on_your_own_folder(data_format, tmp_path):
  config, write, overrides = CASES[data_format]
  write(tmp_path / 'data')
  flags = {**TINY, **overrides, 'data.name': data_format, 'data.root': tmp_path / 'data'}
  done = subprocess.run(
      [sys.executable, '-m', 'mclnf_jax.main', f'--config={config}',
       f'--workdir={tmp_path / "work"}', *(f'--config.{k}={v}' for k, v in flags.items())],
      cwd=REPO, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'),
      timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  table = (tmp_path / 'work' / 'table_psnr.md').read_text()
  assert 'Ours (mod)' in table and 'Step 2' in table
  with open(tmp_path / 'work' / 'modular' / 'config.json') as f:
    assert json.load(f)['data']['name'] == data_format
