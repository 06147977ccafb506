"""Corrupt, foreign or leftover state in a workdir: a one-line error naming the file and
the fix (never a silent restart from scratch, never a traceback), and leftovers of a
killed run (hidden .tmp files, orbax temporary folders) never confuse the next run."""
import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mclnf_jax import checkpoints, experiment, files, learners, meta
from mclnf_jax.errors import UserError
from tests import helpers

pytestmark = pytest.mark.slow


def config_of(tmp):
  return helpers.embedded_config(tmp, 'maml_cl')


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('state')
  config = config_of(tmp)
  workdir = str(tmp / 'work')
  results = experiment.run(config, workdir, 'train_and_eval')
  return config, workdir, results


@pytest.fixture
def copy(finished, tmp_path):
  """A copy of the finished workdir to damage."""
  config, workdir, results = finished
  target = str(tmp_path / 'work')
  shutil.copytree(workdir, target)
  return config, target, results


def step_folder(workdir):
  return os.path.join(workdir, 'maml_cl', 'checkpoints', '4')


def test_a_truncated_checkpoint_is_a_one_line_error(copy):
  config, workdir, _ = copy
  data = glob.glob(os.path.join(step_folder(workdir), 'default', '**', 'd', '*'),
                   recursive=True)
  assert data
  for f in data:
    with open(f, 'r+b') as fh:
      fh.truncate(3)
  for mode in ('train', 'eval'):
    message = helpers.one_line_error('checkpoints/4 is truncated or corrupt', experiment.run,
                                     config, workdir, mode)
    assert 'move ' in message and '--workdir' in message


def test_a_deleted_checkpoint_file_is_a_one_line_error(copy):
  config, workdir, _ = copy
  os.remove(os.path.join(step_folder(workdir), 'default', '_METADATA'))
  helpers.one_line_error('truncated or corrupt.*_METADATA', experiment.run, config,
                         workdir, 'train')


def test_a_checkpoint_of_another_tree_is_a_one_line_error(finished, tmp_path):
  """E.g. one saved before the outer optimiser counted skipped steps."""
  config, _, _ = finished
  folder = str(tmp_path / 'maml_cl')
  learner = learners.build(config, 'maml_cl', helpers.tiny_spec())
  params = learner.init(jax.random.key(0))
  old = meta.outer_optimizer(config.meta).init(params).inner_state   # no skip counters
  checkpoints.save(folder, {'step': jnp.int32(2), 'params': params,
                            'opt_state': old, 'best_params': params,
                            'best_val_mse': jnp.float32(1.0)})
  helpers.one_line_error('holds a meta-state of another structure', meta.best_params,
                         learner, config.meta, config.seed, folder)
  helpers.one_line_error('another structure', checkpoints.resume, folder,
                         lambda: meta.init_state(learner, meta.outer_optimizer(config.meta),
                                                 jax.random.key(0)))


def test_checkpoints_that_is_a_file_is_a_one_line_error(tmp_path):
  os.makedirs(tmp_path / 'maml_cl')
  (tmp_path / 'maml_cl' / 'checkpoints').write_text('x')
  helpers.one_line_error('is not a folder of orbax checkpoints', checkpoints.latest_step,
                         str(tmp_path / 'maml_cl'))


@pytest.mark.parametrize('text', ['{"identity": {', 'not json at all', '[1, 2]', '{}',
                                  '\xff\xfe'])
def test_a_results_file_that_is_not_a_result_is_a_one_line_error(copy, text):
  config, workdir, _ = copy
  path = os.path.join(workdir, 'results', 'maml_cl.json')
  with open(path, 'w', encoding='latin-1') as f:
    f.write(text)
  message = helpers.one_line_error('maml_cl.json is not', experiment.run, config, workdir,
                                   'eval')
  assert 'move ' in message and 'aside' in message


@pytest.mark.parametrize('text', ['{"learner": "maml_cl",', '', '"maml_cl"'])
def test_a_hand_edited_config_json_is_a_one_line_error(copy, text):
  config, workdir, _ = copy
  with open(os.path.join(workdir, 'maml_cl', 'config.json'), 'w') as f:
    f.write(text)
  message = helpers.one_line_error('config.json is not', experiment.run, config, workdir,
                                   'train')
  assert '--workdir' in message


def test_leftovers_of_a_killed_run_do_not_confuse_the_next(copy):
  """A hidden temporary file of files.atomic_write beside each result, a truncated one
  named like a result's temporary, and an orbax temporary folder of a killed save."""
  config, workdir, results = copy
  for name in ('maml_cl.json', 'maml_cl.npz'):
    os.remove(os.path.join(workdir, 'results', name))
    with open(os.path.join(workdir, 'results', f'.{name}.{"ab" * 16}.tmp'), 'w') as f:
      f.write('{"identity": {"half')
  with open(os.path.join(workdir, f'.table_psnr.md.{"cd" * 16}.tmp'), 'w') as f:
    f.write('| half')
  tmp_ckpt = os.path.join(workdir, 'maml_cl', 'checkpoints',
                          '6.orbax-checkpoint-tmp-1700000000000000')
  os.makedirs(os.path.join(tmp_ckpt, 'default'))
  with open(os.path.join(tmp_ckpt, 'default', '_METADATA'), 'w') as f:
    f.write('{"tree_metadata": {')
  again = experiment.run(config, workdir, 'train_and_eval')
  assert checkpoints.latest_step(os.path.join(workdir, 'maml_cl')) == 4
  assert again['maml_cl']['curves'] == results['maml_cl']['curves']
  assert again['maml_cl']['per_signal'] == results['maml_cl']['per_signal']
  with open(os.path.join(workdir, 'results', 'maml_cl.json')) as f:
    assert json.load(f)['curves'] == results['maml_cl']['curves']


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
  path = tmp_path / 'out.json'
  files.write_json(path, {'a': 1})

  def broken(f):
    f.write('{"half')
    raise RuntimeError('killed')
  with pytest.raises(RuntimeError):
    files.atomic_write(path, broken)
  assert json.loads(path.read_text()) == {'a': 1}          # the old file, whole
  assert os.listdir(tmp_path) == ['out.json']


def test_a_run_resumed_from_a_checkpoint_with_a_bad_streak_keeps_counting(tmp_path):
  """The skip counters and the spike guard's running mean are part of the saved
  meta-state."""
  config = helpers.tiny_config('maml_cl')
  learner = learners.build(config, 'maml_cl', helpers.tiny_spec())
  optimizer = meta.outer_optimizer(config.meta)
  state = meta.init_state(learner, optimizer, jax.random.key(0))
  guard = state['opt_state']
  state = {**state, 'opt_state': guard._replace(
      mean_norm=jnp.float32(0.25), inner_state=guard.inner_state._replace(
          notfinite_count=jnp.int32(2), total_notfinite=jnp.int32(5)))}
  checkpoints.save(str(tmp_path), state)
  back = checkpoints.resume(str(tmp_path), lambda: meta.init_state(learner, optimizer,
                                                                    jax.random.key(0)))
  assert [int(c) for c in meta.bad_steps(back)] == [2, 5]
  assert isinstance(back['opt_state'], meta.SpikeState)
  assert float(back['opt_state'].mean_norm) == 0.25
  assert isinstance(back['opt_state'].inner_state, optax.ApplyIfFiniteState)
  np.testing.assert_array_equal(jax.tree.leaves(back['params'])[0],
                                jax.tree.leaves(state['params'])[0])


def test_a_checkpoint_saved_without_the_spike_guard_is_refused_in_one_line(tmp_path):
  """Checkpoints of earlier versions (no spike guard in the optimiser state) are refused
  with the structure error naming the folder, not a traceback."""
  config = helpers.tiny_config('maml_cl')
  learner = learners.build(config, 'maml_cl', helpers.tiny_spec())
  unguarded = meta.outer_optimizer(ml_collections.ConfigDict(
      dict(config.meta.to_dict(), spike_ratio=0.0)))
  checkpoints.save(str(tmp_path), meta.init_state(learner, unguarded, jax.random.key(0)))
  guarded = meta.outer_optimizer(config.meta)
  with pytest.raises(UserError, match='another structure') as info:
    checkpoints.resume(str(tmp_path), lambda: meta.init_state(learner, guarded,
                                                              jax.random.key(0)))
  assert '\n' not in str(info.value)
