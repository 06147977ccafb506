"""Tests for what modalities ask to show (mclnf_jax.visuals) and how report draws it."""
import ast
import os
import pathlib

import numpy as np
import pytest
import soundfile
from PIL import Image, ImageSequence

from mclnf_jax import files, report, visuals
from mclnf_jax.report import animation, figures
from mclnf_jax.tasks import Modality
from mclnf_jax.tasks.audio import SAMPLE_RATE, AudioTasks
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.tasks.scene import SceneTasks
from mclnf_jax.tasks.video import VideoTasks
from mclnf_jax.types import Episode

TASKS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'mclnf_jax' / 'tasks'
# A solid colour per panel, and recon keys deliberately not in table order.
COLORS = {'truth': (255, 255, 0), 'ol': (255, 0, 0), 'er': (0, 0, 255),
          'mcl': (0, 255, 0), 'mcl_fim': (255, 0, 255)}
TABLE_ORDER = ['truth', 'ol', 'er', 'mcl', 'mcl_fim']


def _solid(name, frames=2, size=6):
  """Frames of one colour, frame f with a black pixel at column f (so no two are equal)."""
  video = np.broadcast_to(np.asarray(COLORS[name], np.float32) / 255,
                          (frames, size, size, 3)).copy()
  for f in range(frames):
    video[f, 0, f] = 0.0
  return video


def _colour_order(rgb: np.ndarray) -> list[str]:
  """The panels' names left to right, by the mean column of each panel colour's pixels."""
  centres = {}
  for name, colour in COLORS.items():
    match = (np.abs(rgb[..., :3].astype(int) - colour) <= 8).all(-1)
    assert match.sum() > 4, f'no {name} panel found'
    centres[name] = np.nonzero(match)[1].mean()
  return sorted(centres, key=centres.get)


def test_gif_panels_in_the_order_of_the_png_grid_and_labelled(tmp_path):
  recons = [{m: _solid(m) for m in ('mcl_fim', 'mcl', 'er', 'ol')}]
  specs = VideoTasks((2, 6, 6), 3, (2, 1, 1)).visuals(
      [_solid('truth')], recons, [{'mcl': 30.0, 'ol': 20.0}])
  assert [type(s) for s in specs] == [visuals.ImageGrid, visuals.Animation]
  for spec in specs:
    report.draw(tmp_path / 'reconstructions', spec)
  with Image.open(tmp_path / 'reconstructions_0.png') as png:
    png_order = _colour_order(np.asarray(png.convert('RGB')))
  with Image.open(tmp_path / 'reconstructions_0.gif') as gif:
    frames = [np.asarray(f.convert('RGB')) for f in ImageSequence.Iterator(gif)]
  assert png_order == TABLE_ORDER
  assert len(frames) == 2
  for frame in frames:
    assert _colour_order(frame[animation.LABEL_HEIGHT:]) == png_order
  # A label strip above every panel: light text on the dark strip, in each panel's span.
  strip, body = frames[0][:animation.LABEL_HEIGHT], frames[0][animation.LABEL_HEIGHT:]
  assert body.shape[0] >= 128
  panel_width = body.shape[0]   # square frames
  for k in range(len(TABLE_ORDER)):
    left = k * (panel_width + 2)
    assert (strip[:, left:left + panel_width].min(-1) > 200).any(), f'panel {k} unlabelled'


def test_tasks_import_no_drawing_library():
  banned = ('mclnf_jax.report', 'matplotlib', 'PIL', 'soundfile')
  found = []
  for path in sorted(TASKS_DIR.glob('*.py')):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        names = [base] + [f'{base}.{a.name}' for a in node.names]
      else:
        continue
      found += [f'{path.name}: {n}' for n in names
                if any(n == b or n.startswith(b + '.') for b in banned)]
  assert not found
  assert len(list(TASKS_DIR.glob('*.py'))) >= 5


def test_every_modality_implements_every_hook_of_the_protocol():
  hooks = [n for n, v in vars(Modality).items() if callable(v) and not n.startswith('_')]
  assert {'visuals', 'flythrough_rays', 'host_metrics', 'episode', 'route'} <= set(hooks)
  for cls in (ImageTasks, VideoTasks, AudioTasks, SceneTasks):
    for hook in hooks:
      assert callable(getattr(cls, hook)), f'{cls.__name__}.{hook}'
  assert ImageTasks((4, 4), 3, (1, 2)).flythrough_rays(np.zeros((4, 4, 3))) is None
  assert ImageTasks((4, 4), 3, (1, 2)).host_metrics(np.zeros((4, 4, 3)), None) == {}
  assert AudioTasks((8,), 1, (2,)).flythrough_rays(np.zeros((8, 1))) is None
  assert VideoTasks((2, 4, 4), 3, (2, 1, 1)).flythrough_rays(np.zeros((2, 4, 4, 3))) is None


def test_killed_writer_leaves_no_partial_file(tmp_path):
  def dies_midway(f):
    f.write(b'GIF89a partial')
    raise KeyboardInterrupt   # as a kill would stop the writer
  with pytest.raises(KeyboardInterrupt):
    files.atomic_write(tmp_path / 'x.gif', dies_midway, binary=True)
  assert os.listdir(tmp_path) == []
  # The same through a figure writer, over an existing file: the old file is kept whole.
  spec = visuals.Animation('', _solid('truth'), {'mcl': _solid('mcl')})
  report.draw(tmp_path / 'a', spec)
  before = (tmp_path / 'a.gif').read_bytes()

  def save_then_die(self, f, *args, **kwargs):
    f.write(b'GIF89a')
    raise OSError('disk full')
  original = Image.Image.save
  Image.Image.save = save_then_die
  try:
    with pytest.raises(OSError):
      report.draw(tmp_path / 'a', spec)
    with pytest.raises(OSError):
      report.draw(tmp_path / 'b', spec)
  finally:
    Image.Image.save = original
  assert os.listdir(tmp_path) == ['a.gif']
  assert (tmp_path / 'a.gif').read_bytes() == before


def test_audio_clips_write_wavs_and_a_plot(tmp_path):
  t = np.arange(2048) / SAMPLE_RATE
  wave = (0.5 * np.sin(2 * np.pi * 440 * t))[:, None].astype(np.float32)
  specs = AudioTasks((2048,), 1, (2,)).visuals(
      [wave], [{'mcl': wave * 0.9, 'ol': np.clip(wave * 3, -2, 2)}], [{'mcl': 31.0}])
  assert [s.suffix for s in specs] == ['_0']
  report.draw(tmp_path / 'reconstructions', specs[0])
  assert sorted(os.listdir(tmp_path)) == [
      'reconstructions_0.png', 'reconstructions_0_ground_truth.wav',
      'reconstructions_0_mcl.wav', 'reconstructions_0_ol.wav']
  data, rate = soundfile.read(tmp_path / 'reconstructions_0_ol.wav')
  assert rate == SAMPLE_RATE and data.shape == (2048,) and np.abs(data).max() <= 1.0


class _Orbit:
  """A modality whose second signal has no camera path (only the hook is used)."""

  def flythrough_rays(self, signal):
    if signal is None:
      return None
    rays = np.zeros((3, 8 * 10, 6), np.float32)
    rays[..., 0] = np.arange(3)[:, None] / 3     # frames differ (GIFs merge equal ones)
    return visuals.FlythroughRays(rays.reshape(-1, 6), (8, 10))


def test_flythroughs_are_scaled_up_gifs(tmp_path):
  states = {'w': np.arange(2.0)}
  predict = lambda state, rays: rays[:, :3] + state['w'] * 0
  report.save_flythroughs(_Orbit(), 'mcl', predict, states, ['block', None], 4, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ['mcl_flythrough_4.gif', 'mcl_flythrough_4.npz']
  with np.load(tmp_path / 'mcl_flythrough_4.npz') as kept:   # for the side-by-side
    assert kept['frames'].shape == (3, 8, 10, 3) and kept['frames'].dtype == np.uint8
  with Image.open(tmp_path / 'mcl_flythrough_4.gif') as gif:
    assert gif.n_frames == 3 and gif.height >= 256 + animation.LABEL_HEIGHT


def test_write_report_draws_what_the_modality_asks(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(2, 4, 4, 3)).astype(np.float32)
  results = {}
  for name, psnr in (('mcl', [20.0, 30.0]), ('ol', [15.0, 10.0])):
    files.write_npz(tmp_path / 'results' / f'{name}.npz',
                    recon=np.stack([np.stack([images[i]] * 2) for i in range(2)]))
    results[name] = {'steps': [1, 2], 'curves': {'psnr': psnr},
                     'per_signal': {'psnr': [psnr, psnr]}}
  shown = Episode(None, None, None, images.reshape(2, 16, 3))
  report.write_report(str(tmp_path), ImageTasks((4, 4), 3, (1, 2)), results, shown)
  for f in ('table_psnr.md', 'table_psnr.csv', 'curves_psnr.png', 'curves.csv',
            'reconstructions.png'):
    assert os.path.getsize(tmp_path / f) > 0
  assert not [f for f in os.listdir(tmp_path) if 'tmp' in f]


def _captured(monkeypatch):
  """The Figure objects figures.save_figure is given (the PNG is still written)."""
  shown, real = [], figures.save_figure
  def keep(path, fig):
    shown.append(fig)
    real(path, fig)
  monkeypatch.setattr(figures, 'save_figure', keep)
  return shown


def test_curves_read_without_the_code(tmp_path, monkeypatch):
  shown = _captured(monkeypatch)
  steps = [2 ** i for i in range(13)]
  curves = {m: {'psnr': np.linspace(10, 30, 13) + i} for i, m in
            enumerate(('ol', 'modular', 'modular_fim'))}
  figures.plot_curves(tmp_path / 'c.png', steps, curves, 'psnr', dataset='celeba')
  ax = shown[0].axes[0]
  assert ax.get_xscale() == 'log'
  assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in steps]
  assert ax.get_xlabel() == 'test-time steps per task'
  assert ax.get_title() == 'PSNR (dB) on celeba' and ax.get_ylabel() == 'PSNR (dB)'
  legend = shown[0].legends[0]
  assert [t.get_text() for t in legend.get_texts()] == ['OL', 'Ours (mod)', 'Ours (MIM)']


def test_grid_names_method_metric_unit_and_step(tmp_path, monkeypatch):
  shown = _captured(monkeypatch)
  image = np.zeros((4, 4, 3), np.float32)
  figures.image_grid(tmp_path / 'g.png', image, {'ol': image, 'modular': image},
                     {'ol': 20.0, 'modular': 25.5}, steps={'ol': 4096, 'modular': 64},
                     dataset='celeba')
  axes = shown[0].axes
  assert [a.get_title() for a in axes] == ['Ground truth', 'OL\nstep 4096',
                                           'Ours (mod)\nstep 64']
  assert [a.get_xlabel() for a in axes[1:]] == ['PSNR 20.00 dB', 'PSNR 25.50 dB']
  assert 'best test-time step (celeba)' in shown[0]._suptitle.get_text()
