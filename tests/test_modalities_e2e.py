"""Short end-to-end runs of video, audio and NeRF through the same experiment loop."""
import json
import os

import numpy as np
import pytest
import soundfile

from mclnf_jax import experiment
from mclnf_jax.configs import paper
from mclnf_jax.data import city, matrixcity

pytestmark = pytest.mark.slow
LEARNERS = 'cl,modular,modular_fim'


def tiny(config, learners=LEARNERS):
  """Shrinks a paper config to seconds: 2 meta-steps, 2 test-time steps, tiny widths."""
  config.learners = learners
  for name in config.methods:
    config.methods[name].width = 8
  config.field.depth = 3
  config.meta.update(steps=2, batch_size=2, inner_steps=1, val_every=1, log_every=1,
                     save_every=2)
  config.eval.update(max_steps=2, batch_size=2, num_shown=1)
  return config


def test_video_runs_end_to_end(tmp_path):
  c = tiny(paper.grid_config('video'))
  c.data.update(name='embedded', resolution=12, frames=4, num_train=4, num_val=2, num_test=2)
  c.tasks.grid = (4, 1, 1)
  results = experiment.run(c, str(tmp_path), 'train_and_eval')
  assert set(results['modular']['curves']) == {'psnr', 'ssim'}
  for f in ('table_psnr.md', 'reconstructions_0.png', 'reconstructions_0.gif'):
    assert os.path.getsize(tmp_path / f) > 0


def write_clips(folder, seconds=0.5, rate=16_000):
  """Chirps with an envelope (speech-like enough for PESQ), and one silent clip."""
  os.makedirs(folder)
  t = np.arange(int(seconds * rate)) / rate
  for i in range(18):
    wave = 0.5 * np.sin(2 * np.pi * (200 + 40 * i) * t * (1 + t)) * np.sin(np.pi * t / seconds)
    soundfile.write(folder / f'clip_{i:02d}.wav', wave.astype(np.float32), rate)
  soundfile.write(folder / 'clip_98.wav', (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
                  rate)
  soundfile.write(folder / 'clip_99_silent.wav', np.zeros_like(t, np.float32), rate)


def test_audio_runs_end_to_end_and_reports_undefined_pesq(tmp_path):
  write_clips(tmp_path / 'clips')
  c = tiny(paper.grid_config('audio'))
  c.data.update(name='audio_dir', root=str(tmp_path / 'clips'), seconds=0.5, num_val=2,
                num_test=0)
  c.tasks.grid = (4,)
  c.field.w0_first = 300.0
  results = experiment.run(c, str(tmp_path / 'work'), 'train_and_eval')
  pesq = np.array(results['modular']['per_signal']['pesq'])      # [2 test clips, steps]
  assert np.isfinite(pesq[0]).all() and np.isnan(pesq[1]).all()   # the silent clip
  assert np.isfinite(results['modular']['curves']['psnr']).all()
  assert os.path.exists(tmp_path / 'work' / 'reconstructions_0_modular.wav')


@pytest.fixture(scope='module')
def matrixcity_root(tmp_path_factory):
  """Three rendered city blocks in MatrixCity's on-disk layout (block 3 is meta-test)."""
  root = tmp_path_factory.mktemp('matrixcity')
  train, test, heldout = city.make_city_dataset(num_blocks=3, height=16, width=16,
                                                views_per_cell=2, heldout_views_per_cell=1)
  scenes = train + test
  for i, scene in enumerate(scenes, start=1):
    matrixcity.write_matrixcity_fixture(str(root), scene, i)
  matrixcity.write_matrixcity_fixture(str(root), heldout[-1], len(scenes), split='test')
  return root, len(scenes)


def nerf_config(root, test_block):
  from configs import nerf_matrixcity
  c = tiny(nerf_matrixcity.get_config(), learners='modular,meil_nerf')
  c.data.update(root=str(root), num_val=1, num_test=1)
  c.scene.update(train_blocks='1,2', test_blocks=str(test_block), rays_per_task=32,
                 heldout_views=4, image_width=16, image_height=16)
  c.field.update(pos_freqs=2, dir_freqs=1)
  c.render.update(num_samples=8, hierarchical_samples=4, chunk=256)
  return c


def test_nerf_on_a_matrixcity_fixture(matrixcity_root, tmp_path):
  root, test_block = matrixcity_root
  c = nerf_config(root, test_block)
  results = experiment.run(c, str(tmp_path), 'train_and_eval')
  assert np.isfinite(results['modular']['curves']['psnr']).all()
  for f in ('table_psnr.md', 'reconstructions_0.png', 'results/modular_flythrough_0.gif',
            'scene_views_0.png', 'scene_routing_0.png', 'flythrough_0.gif'):
    assert os.path.getsize(tmp_path / f) > 0, f
  # The best learner beside the best of the other kind (modular, MEIL-NeRF), >= 256 px.
  from PIL import Image
  with Image.open(tmp_path / 'flythrough_0.gif') as gif:
    assert gif.height >= 256 and gif.width >= 2 * 256 and gif.n_frames > 1
  with open(tmp_path / 'modular' / 'config.json') as f:
    assert json.load(f)['data']['name'] == 'matrixcity'
