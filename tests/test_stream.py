"""The streaming API: a stream equals the batch evaluation on the same tasks, compiles
O(log n) times, survives save/load, caps its experts, renders scenes, refuses bad input."""
import collections
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mclnf_jax import api, learners
from mclnf_jax.configs import nerf
from mclnf_jax.data import city
from mclnf_jax.data.scene import SceneSignal
from mclnf_jax.evaluate import Evaluator
from mclnf_jax.fields import param_count
from mclnf_jax.learners.base import Learner
from mclnf_jax.stream import Stream
from mclnf_jax.stream.sequential import Sequential
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.tasks.scene import SceneTasks
from mclnf_jax.types import stack_episodes
from tests import helpers

STEPS = 4


def _config(learner='modular'):
  config = helpers.tiny_config(learner)
  config.data.resolution = 12            # SSIM's window, for api.fit's metrics
  return config


def _image(seed=0, size=12):
  return helpers.smooth_images(1, size=size, seed=seed)[0]


def _episode(config, image):
  return api.build(config, 'modular')[1].episode(image)


def _stream_all(stream, episode, order=None):
  for t in order if order is not None else range(episode.context_x.shape[0]):
    stream.observe(episode.context_x[t], episode.context_y[t], t)
  return stream


def _batch_prediction(config, name, episode, steps, init=None):
  """The evaluation protocol's prediction of the whole signal after `steps` per task."""
  learner, modality = api.build(config, name)
  init = learner.init(jax.random.key(config.seed)) if init is None else init
  episodes = stack_episodes([episode])
  _, preds, _, _ = Evaluator(learner, modality).curves(init, episodes, [steps], keep=1,
                                                        log=None)
  return preds[0, -1].reshape(-1, preds.shape[-1])


def test_modular_stream_equals_the_batch_evaluation_and_unseen_cells_answer_the_init():
  config = _config()
  image = _image()
  episode = _episode(config, image)
  stream = Stream(config, steps=STEPS, capacity=1)
  _stream_all(stream, episode, order=[0, 1])
  learner, _ = api.build(config, 'modular')
  setup = learners.build_setup(config, 'modular', task_spec(ImageTasks((12, 12), 3, (1, 4))))
  init = learner.init(jax.random.key(config.seed))
  unseen = episode.context_x[3]                     # strip 3 has not arrived yet
  np.testing.assert_allclose(stream.query(unseen), setup.field.apply(init, unseen),
                             atol=1e-6)
  _stream_all(stream, episode, order=[2, 3])
  fit = api.fit(image, config=config, steps=STEPS)
  np.testing.assert_allclose(stream.query(episode.query_x).reshape(image.shape), fit.recon,
                             atol=1e-5)
  assert stream.num_experts == 4 and stream.capacity == 8 and stream.tasks == 4
  assert stream.bytes_per_expert() == 4 * param_count(init)


@pytest.mark.parametrize('name', ['cl', 'er', 'ewc'])
def test_single_network_learners_on_a_stream_equal_their_batch_adaptation(name):
  config = _config(name)
  episode = _episode(config, _image(1))
  stream = _stream_all(Stream(config, learner=name, steps=STEPS), episode)
  np.testing.assert_allclose(stream.query(episode.query_x),
                             _batch_prediction(config, name, episode, STEPS), atol=1e-5)
  assert stream.num_experts == 1 and stream.traces['fit'] == 1


def test_twenty_tasks_compile_the_fit_once_and_the_buffer_once_per_doubling():
  config = _config()
  modality = ImageTasks((20, 20), 3, (5, 4))                  # 20 cells of 4 x 5 pixels
  episode = modality.episode(_image(2, size=20))
  stream = Stream(config, modality=modality, steps=2, capacity=2)
  capacities = set()
  for t in range(20):
    stream.observe(episode.context_x[t], episode.context_y[t], t)
    stream.query(episode.query_x)
    capacities.add(stream.capacity)
  # 21 slots (the init's and 20 experts) from 2: capacities 2, 4, 8, 16, 32.
  assert sorted(capacities) == [2, 4, 8, 16, 32]
  assert stream.traces['fit'] == 1
  assert stream.traces['write'] == stream.traces['query'] == 5


def test_a_cell_seen_again_continues_its_own_expert():
  config = _config()               # SGD: a fresh optimiser state is no state
  episode = _episode(config, _image(3))
  twice = Stream(config, steps=2)
  for _ in range(2):
    twice.observe(episode.context_x[1], episode.context_y[1], 1)
  once = Stream(config, steps=4).observe(episode.context_x[1], episode.context_y[1], 1)
  np.testing.assert_allclose(twice.query(episode.query_x), once.query(episode.query_x),
                             atol=1e-5)
  assert twice.num_experts == 1 and twice.tasks == 2


def test_the_memory_cap_merges_the_oldest_experts_by_averaging():
  config = _config()
  episode = _episode(config, _image(4))
  free = _stream_all(Stream(config, steps=STEPS), episode)
  capped = _stream_all(Stream(config, steps=STEPS, max_experts=2, merge='average'), episode)
  assert capped.num_experts == 3                             # 2 own + the shared one
  experts = free.core.buffer
  mean = jax.tree.map(lambda p: (p[1] + p[2]) / 2, experts)  # tasks 0 and 1: slots 1, 2
  setup = learners.build_setup(config, 'modular', task_spec(free.modality))
  for t in (0, 1):
    np.testing.assert_allclose(capped.query(episode.context_x[t]),
                               setup.field.apply(mean, episode.context_x[t]), atol=1e-5)
  for t in (2, 3):
    np.testing.assert_allclose(capped.query(episode.context_x[t]),
                               free.query(episode.context_x[t]), atol=1e-6)
  capped.observe(episode.context_x[0], episode.context_y[0], 0)   # a merged cell again
  assert capped.num_experts == 3
  np.testing.assert_allclose(capped.query(episode.context_x[0]),
                             free.query(episode.context_x[0]), atol=1e-5)


def test_distillation_refits_the_shared_expert_and_keeps_the_cap():
  config = _config()
  episode = _episode(config, _image(4))
  averaged = _stream_all(Stream(config, steps=STEPS, max_experts=2, merge='average'), episode)
  distilled = _stream_all(Stream(config, steps=STEPS, max_experts=2), episode)
  assert distilled.num_experts == 3 and distilled.traces['teach'] == 1
  assert distilled.traces['fit'] == 2          # a task's shape and the distillation batch's
  merged = episode.context_x[0]
  assert not np.allclose(distilled.query(merged), averaged.query(merged), atol=1e-4)
  np.testing.assert_allclose(distilled.query(episode.context_x[3]),
                             averaged.query(episode.context_x[3]), atol=1e-6)
  helpers.one_line_error('merge=', Stream, config, max_experts=2, merge='mean')


@pytest.mark.parametrize('name,cap', [('modular', 2), ('er', 0)])
def test_save_and_load_continue_the_stream(tmp_path, name, cap):
  """A loaded stream continues as the saved one (modular: merging by distillation)."""
  config = _config(name)
  episode = _episode(config, _image(5))
  kwargs = {'max_experts': cap} if cap else {}
  stream = _stream_all(Stream(config, learner=name, steps=2, **kwargs), episode, [0, 1, 2])
  path = str(tmp_path / 'stream')
  stream.save(path)
  loaded = Stream.load(path)
  assert (loaded.tasks, loaded.learner, loaded.steps) == (3, name, 2)
  np.testing.assert_array_equal(loaded.query(episode.query_x), stream.query(episode.query_x))
  for s in (stream, loaded):
    s.observe(episode.context_x[3], episode.context_y[3], 3)
  np.testing.assert_allclose(loaded.query(episode.query_x), stream.query(episode.query_x),
                             atol=1e-6)
  assert loaded.num_experts == stream.num_experts
  stream.save(path)                                    # a later save replaces it
  assert Stream.load(path).tasks == 4


def test_a_stream_from_an_exported_npz_starts_from_that_init(tmp_path):
  config = _config()
  learner, _ = api.build(config, 'modular')
  init = jax.tree.map(lambda p: p * 0.5, learner.init(jax.random.key(7)))
  api.export_npz(str(tmp_path / 'init.npz'), init)
  episode = _episode(config, _image(6))
  a = Stream.from_npz(str(tmp_path / 'init.npz'), config, steps=2)
  b = Stream(config, init, steps=2)
  for s in (a, b):
    s.observe(episode.context_x[2], episode.context_y[2], 2)
  np.testing.assert_allclose(a.query(episode.query_x), b.query(episode.query_x), atol=1e-6)


def test_bad_input_is_a_one_line_error():
  config = _config()
  episode = _episode(config, _image())
  stream = Stream(config, steps=1)
  x, y = episode.context_x[0], episode.context_y[0]
  for cell in (-1, 4, 1.0, True, 'a'):
    helpers.one_line_error('not a cell of this layout', stream.observe, x, y, cell)
  helpers.one_line_error(r'give \[m, 2\] inputs', stream.observe, x[:, :1], y, 0)
  helpers.one_line_error(r'give \[36, 3\] targets', stream.observe, x, y[:5], 0)
  helpers.one_line_error('NaN or inf', stream.observe, x, y * np.nan, 0)
  helpers.one_line_error(r'give \[N, 2\] inputs', stream.query, np.zeros((3, 3)))
  helpers.one_line_error('needs a scene', stream.render, None)
  helpers.one_line_error('no experts to cap', Stream, _config('cl'), learner='cl',
                         max_experts=2)
  helpers.one_line_error('cannot learn a stream', Stream, _config('mer'), learner='mer')
  helpers.one_line_error('steps >= 1', Stream, config, steps=0)
  helpers.one_line_error('no saved stream', Stream.load, '/nonexistent/stream')
  assert stream.tasks == 0


def test_a_learner_whose_adapt_starts_afresh_is_refused():
  fresh = Learner('fresh', False, False, init=lambda key: {}, start=lambda p: {'a': np.zeros(2)},
                  adapt=lambda state, episode, k: {'b': episode.context_y.sum()},
                  predict=lambda state, x: x)
  stream = Sequential(fresh, {}, collections.Counter())
  helpers.one_line_error('cannot learn a stream', stream.observe, np.zeros((3, 2)),
                         np.zeros((3, 2)), 0, 1)


@pytest.mark.slow
def test_a_scene_stream_renders_what_it_queries():
  _, test, held = city.make_city_dataset(num_blocks=2, height=12, width=12,
                                         views_per_cell=2, heldout_views_per_cell=1)
  config = nerf.nerf('cpu')
  config.field.depth = 2
  for name in config.methods:
    config.methods[name].width = 8
  scene = test[0]
  modality = SceneTasks(grid=(2, 2), bounds=tuple(scene.bounds), near=scene.near,
                        far=scene.far, image_shape=(12, 12), query_views=1,
                        rays_per_task=32, num_samples=8)
  episode = modality.episode(SceneSignal(scene, held[0]))
  stream = Stream(config, modality=modality, steps=2)
  _stream_all(stream, episode, order=[0, 3])
  views = held[0]
  rgb = stream.render(api.Camera(views.c2w[:2], 12, 12, views.focal, views.principal))
  origins, dirs = views.rays()
  rays = np.concatenate([origins, dirs], -1)[:2].reshape(-1, 6)
  np.testing.assert_allclose(rgb.reshape(-1, 3), stream.query(rays), atol=1e-5)
  assert rgb.shape == (2, 12, 12, 3) and np.isfinite(rgb).all()


@pytest.mark.slow
def test_the_stream_example_and_benchmark_run(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  command = [sys.executable, '-m', 'launch.stream', '--config=configs/video_quickstart.py',
             f'--workdir={tmp_path}', '--frames=4', '--every=2', '--steps=2',
             '--learners=modular,cl', '--max_experts=2', '--merge=distill,average']
  run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'RANDOM init' in run.stdout
  out = tmp_path / 'stream_video'
  rows = (out / 'forgetting_cl.csv').read_text().splitlines()
  assert rows[0] == 'tasks_seen,task_1,task_2,task_3,task_4' and len(rows) == 3
  assert rows[1].endswith(',,') and (out / 'forgetting.png').stat().st_size > 0
  table = (out / 'throughput.md').read_text()
  assert 'Ours (mod), cap 2, distill' in table and 'Ours (mod), cap 2, average' in table
  bench = subprocess.run([sys.executable, '-m', 'launch.stream', '--bench',
                          '--bench_tasks=12', '--bench_learners=modular'],
                         capture_output=True, text=True, env=env, timeout=600)
  assert bench.returncode == 0, bench.stderr[-3000:]
  assert '"step_cost_ratio": "12 / 10 tasks"' in bench.stdout
