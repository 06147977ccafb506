"""The notebook API: load a workdir's init, fit new signals, render scenes, npz round trip."""
import dataclasses
import os

import jax
import numpy as np
import pytest

from mclnf_jax import api, experiment, learners
from mclnf_jax.configs import nerf
from mclnf_jax.data import city
from mclnf_jax.data.scene import SceneSignal
from mclnf_jax.errors import UserError
from mclnf_jax.tasks.scene import SceneTasks
from tests import helpers


def _config(tmp_path, learners_='ol,modular'):
  c = helpers.tiny_config(learners_)
  c.data.update(name='embedded', root=str(tmp_path / 'tfds'), resolution=12)
  return c


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('api')
  config, workdir = _config(tmp), str(tmp / 'work')
  results = experiment.run(config, workdir, 'train_and_eval')
  return config, workdir, results


def _assert_same_tree(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_load_init_reads_the_workdir_config_and_fit_matches_the_evaluation(finished):
  config, workdir, results = finished
  loaded = api.load_config(workdir, 'modular')
  assert loaded.data.resolution == 12 and loaded.methods.modular.width == 8
  assert loaded.meta.steps == config.meta.steps and loaded.learners == 'modular'
  init = api.load_init(workdir, 'modular')
  built = learners.build(config, 'modular', experiment.task_spec(
      experiment.make_modality(config)))
  _assert_same_tree(init, experiment.meta_params(config, built,
                                                 os.path.join(workdir, 'modular')))
  signals = experiment.Signals(config, experiment.make_modality(config))
  image = signals.test()[0]
  fit = api.fit(image, config=loaded, init=init, steps=config.eval.max_steps)
  assert fit.steps == results['modular']['steps'] and fit.recon.shape == image.shape
  np.testing.assert_allclose(fit.curves['psnr'],
                             results['modular']['per_signal']['psnr'][0], rtol=1e-4)
  assert fit.metrics['psnr'] == pytest.approx(fit.curves['psnr'][-1])
  assert fit.predict(np.zeros((5, 2), np.float32)).shape == (5, 3)


@pytest.mark.slow
def test_load_init_needs_a_trained_learner_and_refuses_another_config(finished, tmp_path):
  config, workdir, _ = finished
  helpers.one_line_error('holds no meta-trained ol run', api.load_init, workdir, 'ol')
  ol = api.load_init(workdir, 'ol', config=config)            # the random init
  assert jax.tree.leaves(ol)
  other = config.copy_and_resolve_references()
  other.meta.inner_steps = 5
  helpers.one_line_error('another config', api.load_init, workdir, 'modular', other)


def _tiny(learner):
  config = helpers.tiny_config(learner)
  config.data.resolution = 12
  return config


def test_fit_a_synthetic_image():
  config = _tiny('ol')
  image = helpers.smooth_images(1, size=12)[0]
  fit = api.fit(image, config=config, learner='ol', steps=8)
  assert fit.steps == [1, 2, 4, 8] and fit.recon.shape == (12, 12, 3)
  assert set(fit.metrics) >= {'psnr'} and fit.curves['psnr'].shape == (4,)
  assert fit.curves['psnr'][-1] > fit.curves['psnr'][0]
  helpers.one_line_error('signal of shape', api.fit, image[:4], config=config, learner='ol')
  helpers.one_line_error('at least 1 step', api.fit, image, config=config, learner='ol',
                         steps=-1)


def test_npz_round_trip_is_plain_arrays(tmp_path):
  config = _tiny('modular')
  fit = api.fit(helpers.smooth_images(1, size=12)[0], config=config, learner='modular',
                steps=2)
  init, _ = api.build(config, 'modular')
  for name, tree in (('init', init.init(jax.random.key(0))), ('experts', fit.state)):
    path = str(tmp_path / f'{name}.npz')
    api.export_npz(path, tree)
    with np.load(path) as npz:                                 # no package needed
      keys = list(npz.files)
      assert keys == list(api.flatten(tree)) and all('/' in k or k for k in keys)
    _assert_same_tree(api.load_npz(path, like=tree), tree)
    nested = api.load_npz(path)
    for key, value in api.flatten(tree).items():
      node = nested
      for part in key.split('/'):
        node = node[part]
      np.testing.assert_array_equal(node, value)
  with pytest.raises(UserError, match='does not match'):
    api.load_npz(str(tmp_path / 'init.npz'), like={'other': np.zeros(2)})


@pytest.mark.slow
def test_fit_and_render_a_scene():
  train, test, heldout = city.make_city_dataset(num_blocks=4, height=12, width=12,
                                                views_per_cell=2, heldout_views_per_cell=1)
  config = nerf.nerf('cpu')
  config.learners = 'ol'
  config.field.depth = 2
  for name in config.methods:
    config.methods[name].width = 8
  config.render.update(num_samples=8, hierarchical_samples=0)
  scene = test[0]
  tasks = SceneTasks(grid=(2, 2), bounds=tuple(scene.bounds), near=scene.near,
                     far=scene.far, image_shape=(12, 12), query_views=2, rays_per_task=32,
                     num_samples=8)
  fit = api.fit(SceneSignal(scene, heldout[0]), config=config, learner='ol', steps=2,
                modality=tasks)
  assert fit.recon.shape == (2, 12, 12, 3) and np.isfinite(fit.metrics['psnr'])
  views = dataclasses.replace(heldout[0], images=heldout[0].images[:2],
                              c2w=heldout[0].c2w[:2])
  np.testing.assert_allclose(api.render(fit, views), fit.recon, atol=1e-5)
  one = api.render(fit, api.Camera(views.c2w[0][:3], 12, 12, views.focal, views.principal))
  np.testing.assert_allclose(one[0], fit.recon[0], atol=1e-5)
