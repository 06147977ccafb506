"""Where meta-training starts: own checkpoint, then `meta.init_from`, then scratch."""
import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax import checkpoints
from tests import helpers


def init_fn(value=0.0):
  params = {'w': jnp.full((3,), value)}
  return lambda: {'step': jnp.zeros((), jnp.int32), 'params': params,
                  'opt_state': {'m': jnp.zeros((3,))}, 'best_params': params,
                  'best_val_mse': jnp.full((), jnp.inf)}


def saved(folder, step, params, best):
  state = {**init_fn()(), 'step': jnp.int32(step), 'params': {'w': jnp.full((3,), params)},
           'best_params': {'w': jnp.full((3,), best)}, 'best_val_mse': jnp.float32(0.5)}
  checkpoints.save(str(folder), state)
  return state


def test_scratch_when_nothing_is_saved(tmp_path):
  state = checkpoints.resume(str(tmp_path / 'modular'), init_fn(7.0))
  assert int(state['step']) == 0 and float(state['params']['w'][0]) == 7.0


def test_own_checkpoint_resumes_exactly(tmp_path):
  folder = tmp_path / 'modular'
  before = saved(folder, 5, params=1.0, best=2.0)
  after = checkpoints.resume(str(folder), init_fn(), init_from=str(tmp_path / 'elsewhere'))
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)


def test_init_from_starts_at_another_runs_best_params(tmp_path):
  saved(tmp_path / 'other' / 'modular', 9, params=1.0, best=2.0)
  state = checkpoints.resume(str(tmp_path / 'new' / 'modular'), init_fn(),
                             init_from=str(tmp_path / 'other'))
  assert int(state['step']) == 0 and float(state['best_val_mse']) == np.inf
  np.testing.assert_array_equal(state['params']['w'], 2.0)
  np.testing.assert_array_equal(state['opt_state']['m'], 0.0)    # a fresh outer optimiser


def test_missing_checkpoints_are_one_line_errors(tmp_path):
  helpers.one_line_error('config.meta.init_from=.*no checkpoint in', checkpoints.resume,
                         str(tmp_path / 'new' / 'modular'), init_fn(), str(tmp_path / 'none'))
  helpers.one_line_error('no meta-trained checkpoint in .*run with --mode=train',
                         checkpoints.restore, str(tmp_path / 'modular'), init_fn())
  assert not (tmp_path / 'new').exists()
