"""What a NeRF user sees: per method RGB, depth and opacity of held-out views beside the
ground truth, the best learner's fly-through beside the best baseline's, and the expert
routing drawn over the ground, all from the adapted fields' own `predict`."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mclnf_jax import report
from mclnf_jax.data import city
from mclnf_jax.data.scene import SceneSignal
from mclnf_jax.fields import Field, experts
from mclnf_jax.fields.nerf import NeRFMLP
from mclnf_jax.report import run as report_run
from mclnf_jax.tasks.scene import FIGURE_VIEWS, TOPDOWN_PIXELS, SceneTasks
from mclnf_jax.visuals import PanelGrid, RoutingMap

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out


@pytest.fixture(scope='module')
def block():
  train, test, heldout = city.make_city_dataset(num_blocks=2, height=12, width=12,
                                                views_per_cell=2, heldout_views_per_cell=1)
  del train
  scene = test[0]
  tasks = SceneTasks(grid=(2, 2), bounds=tuple(scene.bounds), near=scene.near, far=scene.far,
                     image_shape=(12, 12), query_views=3, rays_per_task=16, num_samples=8,
                     chunk=512)
  return tasks, SceneSignal(scene, heldout[0])


def modular_predict(tasks):
  field = Field(NeRFMLP(depth=2, width=16, pos_freqs=3, dir_freqs=1, skip=True), in_dim=6)
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(0), tasks.num_tasks))
  routed = experts.routed_apply(field, tasks.route)
  return (lambda state, x: tasks.predictor(routed)(state['params'], x)), stacked


def test_figure_rays_render_rgb_depth_and_opacity(block):
  tasks, signal = block
  predict, stacked = modular_predict(tasks)
  fig = tasks.figure_rays(signal)
  h, w = tasks.image_shape
  assert fig.rays.shape == (FIGURE_VIEWS * h * w + TOPDOWN_PIXELS ** 2, 8)
  out = np.asarray(jax.jit(predict)({'params': stacked}, jnp.asarray(fig.rays)))
  assert out.shape == (len(fig.rays), 5)
  # The RGB of a figure render is the evaluation's prediction of the same rays.
  rgb = np.asarray(predict({'params': stacked}, jnp.asarray(fig.rays[:, :6])))
  np.testing.assert_allclose(out[:, :3], rgb, rtol=1e-5, atol=1e-6)
  depth, acc = out[:, 3], out[:, 4]
  assert (depth >= tasks.near - 1e-4).all() and (depth <= tasks.far + 1e-4).all()
  assert (acc >= 0).all() and (acc <= 1 + 1e-5).all()
  assert fig.data['depth'].shape == (FIGURE_VIEWS, h, w)      # the city has true depth
  assert len(fig.data['cameras']) == signal.context.num_views
  assert set(fig.data['camera_task'].tolist()) == {0, 1, 2, 3}


def test_routing_labels_follow_route(block):
  tasks, _ = block
  labels = tasks.routing_labels(8)
  # Row 0 is north (y max): grid rows run along y, so the top half is cells 2 and 3.
  assert labels[0, 0] == 2 and labels[0, -1] == 3 and labels[-1, 0] == 0 and labels[-1, -1] == 1


def fake_results(names, psnr_last):
  return {n: {'steps': [1, 2], 'curves': {'psnr': [10.0, p], 'ssim': [0.1, 0.2]},
              'per_signal': {'psnr': [[10.0, p]], 'ssim': [[0.1, 0.2]]}}
          for n, p in zip(names, psnr_last)}


def test_best_and_baseline():
  results = fake_results(['mean', 'ol', 'er', 'modular', 'mol'], [30, 14, 15, 20, 21])
  assert report_run.best_and_baseline(results, 'psnr') == ('mol', 'er')   # mean: trivial
  # The best is a baseline: beside it, the best meta-learned learner.
  results = fake_results(['ol', 'er', 'modular', 'mol'], [25, 15, 20, 19])
  assert report_run.best_and_baseline(results, 'psnr') == ('ol', 'modular')
  assert report_run.best_and_baseline(fake_results(['modular'], [3]), 'psnr') == ('modular', None)


def test_report_draws_views_flythrough_and_routing(block, tmp_path):
  tasks, signal = block
  predict, stacked = modular_predict(tasks)
  results_dir = tmp_path / 'results'
  os.makedirs(results_dir)
  states = {'params': jax.tree_util.tree_map(lambda p: p[None], stacked)}
  report.save_flythroughs(tasks, 'modular', predict, states, [signal], 0, str(results_dir))
  # A method that is no field (the signal mean) predicts RGB only: its depth is n/a.
  mean = lambda state, x: jnp.broadcast_to(state['mean'], x.shape[:1] + (3,))
  report.save_flythroughs(tasks, 'mean', mean, {'mean': jnp.full((1, 3), 0.5)}, [signal], 0,
                          str(results_dir))
  single = jax.tree_util.tree_map(lambda p: p[1], stacked)
  field = Field(NeRFMLP(depth=2, width=16, pos_freqs=3, dir_freqs=1, skip=True), in_dim=6)
  ol = lambda state, x: tasks.predictor(field.apply)(state['params'], x)
  report.save_flythroughs(tasks, 'ol', ol, {'params': jax.tree_util.tree_map(
      lambda p: p[None], single)}, [signal], 0, str(results_dir))
  assert {'modular_figure_0.npz', 'modular_flythrough_0.npz', 'mean_figure_0.npz',
          'ol_flythrough_0.gif'} <= set(os.listdir(results_dir))

  episode = tasks.episode(signal)
  shown = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], episode)
  results = fake_results(['mean', 'ol', 'modular'], [12.0, 13.0, 14.0])
  written = report_run.write_scene_figures(str(tmp_path), tasks, results, shown, 'psnr')
  names = sorted(os.path.basename(p) for p in written)
  assert names == ['flythrough_0.gif', 'flythrough_0.mp4', 'scene_routing_0.png',
                   'scene_views_0.png']
  with Image.open(tmp_path / 'flythrough_0.gif') as gif:
    assert gif.n_frames == 36 and gif.height >= 256
    assert gif.width >= 2 * 256                           # best and baseline side by side
  import av
  with av.open(str(tmp_path / 'flythrough_0.mp4')) as video:
    stream = video.streams.video[0]
    assert stream.height >= 256 and sum(1 for _ in video.decode(stream)) == 36
  for png in ('scene_views_0.png', 'scene_routing_0.png'):
    with Image.open(tmp_path / png) as image:
      assert image.width > 300 and image.height > 300

  specs = tasks.figure_visuals(
      0, jax.tree_util.tree_map(np.asarray, episode),
      {n: np.load(results_dir / f'{n}_figure_0.npz')['render'] for n in ('mean', 'modular')},
      {k[5:]: v for k, v in np.load(results_dir / 'modular_figure_0.npz').items()
       if k.startswith('data_')}, 2, 'modular')
  grid, routing = specs
  assert isinstance(grid, PanelGrid) and isinstance(routing, RoutingMap)
  assert len(grid.truth) == 3 * FIGURE_VIEWS == len(grid.recons['modular'])
  assert grid.recons['mean'][1].image is None                     # no depth from a mean
  below = grid.recons['modular'][0].below
  assert 'dB, SSIM' in below and 'step 2' in below
  assert grid.recons['modular'][1].cmap == 'turbo' and grid.recons['modular'][2].cmap == 'gray'
  assert routing.image.shape == (TOPDOWN_PIXELS, TOPDOWN_PIXELS, 3)
  assert routing.method == 'modular'
