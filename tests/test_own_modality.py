"""A modality of one's own (examples/sdf2d.py: 2-D signed distance fields, quadrant tasks)
runs through the unchanged learners, meta-training, evaluation and report, plugged in with
`tasks.factory.register_modality`."""
import os
import pathlib

import numpy as np
import pytest

from launch.paper_tables import load_config_file
from mclnf_jax import experiment
from mclnf_jax.configs import checks
from mclnf_jax.data import signals
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import factory, task_spec

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'examples' / 'sdf2d.py'


@pytest.fixture
def config(monkeypatch):
  c = load_config_file(str(EXAMPLE))              # loading the file registers 'sdf2d'
  # Until configs/checks.py asks the factory (`factory.modality_names()`) for known names.
  built_in = getattr(checks, 'MODALITIES', None)
  if built_in is not None and 'sdf2d' not in built_in:
    monkeypatch.setattr(checks, 'MODALITIES', tuple(built_in) + ('sdf2d',))
  return c


def test_the_example_registers_its_modality_and_data(config):
  assert config.modality == 'sdf2d' and 'sdf2d' in factory.modality_names()
  modality = factory.make_modality(config)
  spec = task_spec(modality)
  assert (spec.in_dim, spec.out_dim, spec.num_tasks) == (2, 1, 4)
  train = signals.load_signals(config, 'train')
  assert train.shape == (72, 32, 32, 1) and (train < 0).any() and (train > 0).any()
  episode = modality.episode(train[0])
  assert episode.context_x.shape == (4, 256, 2)
  routed = np.asarray(modality.route(episode.context_x.reshape(-1, 2))).argmax(-1)
  np.testing.assert_array_equal(routed, np.repeat(np.arange(4), 256))   # task t -> expert t
  scores = modality.metrics(train[0], train[0])
  assert float(scores['iou']) == 1.0 and float(scores['mse']) == 0.0


def test_built_in_names_cannot_be_replaced():
  with pytest.raises(UserError, match='built in'):
    factory.register_modality('image', lambda c: None, lambda c, s: None)


@pytest.mark.slow
def test_the_example_runs_end_to_end(config, tmp_path):
  config.learners = 'ol,modular'
  for name in config.methods:
    config.methods[name].width = 8
  config.field.depth = 3
  config.data.update(resolution=16, num_train=6, num_val=2, num_test=2)
  config.meta.update(steps=2, batch_size=2, inner_steps=1, val_every=1, log_every=1,
                     save_every=2)
  config.eval.update(max_steps=4, batch_size=2, num_shown=1)
  results = experiment.run(config, str(tmp_path), 'train_and_eval')
  for name in ('ol', 'modular'):
    curves = results[name]['curves']
    assert set(curves) == {'iou', 'mse'}
    assert np.isfinite(curves['iou']).all() and np.isfinite(curves['mse']).all()
  for f in ('table_iou.md', 'table_mse.md', 'curves_iou.png', 'reconstructions.png'):
    assert os.path.getsize(tmp_path / f) > 0
  assert 'Ours (mod)' in (tmp_path / 'table_iou.md').read_text()
