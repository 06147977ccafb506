"""Divergence: a non-finite meta-step, or one whose meta-gradient spikes, is skipped
(optax.apply_if_finite) and counted, a run stops after meta.max_bad_steps of them in a
row, non-finite meta-params are never saved, and a meta-validation PSNR drop is logged."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mclnf_jax import learners, meta
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError
from mclnf_jax.types import Episode
from tests import helpers


def setup(lr=1e-3, name='maml_cl'):
  config = helpers.tiny_config(name)
  config.meta.lr = lr
  learner = learners.build(config, name, helpers.tiny_spec())
  optimizer = meta.outer_optimizer(config.meta)
  state = meta.init_state(learner, optimizer, jax.random.key(0))
  return config, learner, optimizer, state


def good_batch() -> Episode:
  return jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))


def nan_batch() -> Episode:
  """A batch whose targets contain NaN (one pixel of one task of one signal)."""
  b = helpers.tiny_episodes(2)
  y = np.array(b.context_y)
  y[0, 0, 0, 0] = np.nan
  return jax.tree.map(jnp.asarray, b._replace(context_y=y))


def moments(state):
  """The outer Adam's state inside the spike guard and apply_if_finite."""
  return state['opt_state'].inner_state.inner_state


def copy(tree):
  return jax.tree.map(lambda x: np.array(x), tree)


def assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_a_nan_batch_skips_the_update_and_counts_it():
  _, learner, optimizer, state = setup()
  step = meta.make_meta_step(learner, optimizer)
  before = copy(state)
  state, metrics = step(state, nan_batch())
  assert not np.isfinite(float(metrics['loss']))
  assert int(state['step']) == 1                        # the step is consumed
  assert_same(state['params'], before['params'])        # ... but changes nothing
  assert_same(moments(state), moments(before))
  assert [int(c) for c in meta.bad_steps(state)] == [1, 1]
  state, metrics = step(state, nan_batch())
  assert [int(c) for c in meta.bad_steps(state)] == [2, 2]
  state, metrics = step(state, good_batch())             # a good step resets the run
  assert np.isfinite(float(metrics['loss']))
  assert [int(c) for c in meta.bad_steps(state)] == [0, 2]
  assert not np.array_equal(jax.tree.leaves(state['params'])[0],
                            jax.tree.leaves(before['params'])[0])


def guarded_sgd(ratio):
  finite = optax.apply_if_finite(optax.sgd(1.0), 10)
  return meta.skip_spikes(finite, ratio)


def test_a_spiking_gradient_is_skipped_counted_and_left_out_of_the_running_mean():
  opt = guarded_sgd(10.0)
  params = {'w': jnp.zeros(3)}
  state = opt.init(params)
  applied = []
  for scale in (1.0, 2.0, 100.0, 3.0):     # running mean 1 -> 1.1; 100 > 10 x 1.1
    updates, state = opt.update({'w': jnp.full(3, scale / np.sqrt(3))}, state, params)
    applied.append(float(jnp.abs(updates['w']).sum()))
  assert applied[2] == 0.0                                     # the spike moved nothing
  assert all(a > 0 for a in applied[:2] + applied[3:])
  assert [int(state.notfinite_count), int(state.total_notfinite)] == [0, 1]
  np.testing.assert_allclose(float(state.mean_norm), 0.9 * (0.9 * 1 + 0.1 * 2) + 0.1 * 3,
                             rtol=1e-6)


def test_a_gradient_just_under_the_ratio_is_applied_and_nan_still_skipped():
  opt = guarded_sgd(10.0)
  params = {'w': jnp.zeros(())}
  state = opt.init(params)
  _, state = opt.update({'w': jnp.float32(1.0)}, state, params)
  updates, state = opt.update({'w': jnp.float32(9.9)}, state, params)
  assert float(updates['w']) == pytest.approx(-9.9) and int(state.total_notfinite) == 0
  updates, state = opt.update({'w': jnp.float32(np.nan)}, state, params)
  assert float(updates['w']) == 0.0 and int(state.total_notfinite) == 1


def test_spike_ratio_zero_applies_every_finite_meta_gradient():
  config = helpers.tiny_config('maml_cl')
  config.meta.spike_ratio = 0.0
  opt = meta.outer_optimizer(config.meta)
  params = {'w': jnp.zeros(())}
  state = opt.init(params)
  assert not isinstance(state, meta.SpikeState)
  _, state = opt.update({'w': jnp.float32(1.0)}, state, params)
  updates, state = opt.update({'w': jnp.float32(1e6)}, state, params)
  assert float(updates['w']) != 0.0 and int(state.total_notfinite) == 0


def test_a_spike_ratio_of_one_or_less_is_refused_in_one_line():
  config = helpers.tiny_config('maml_cl')
  config.meta.spike_ratio = 1.0
  with pytest.raises(UserError, match='spike_ratio=1.0 must be 0') as info:
    checks.check(config)
  assert '\n' not in str(info.value)


def run_train(state, learner, optimizer, batches, *, steps, max_bad_steps, save_every=2):
  saved = []

  def save(s):
    assert bool(meta.all_finite((s['params'], s['best_params'])))
    saved.append((int(s['step']), copy(s['params'])))
  for _ in meta.train(learner, optimizer, state, batches, good_batch(), steps=steps,
                      val_every=2, log_every=1, save=save, save_every=save_every,
                      max_bad_steps=max_bad_steps, folder='/w/maml_cl'):
    pass
  return saved


def test_consecutive_bad_steps_stop_the_run_naming_the_last_good_checkpoint():
  _, learner, optimizer, state = setup()
  batches = lambda step: good_batch() if step < 2 else nan_batch()
  saved = []
  with pytest.raises(UserError) as info:
    saved = run_train(state, learner, optimizer, batches, steps=20, max_bad_steps=3)
  message = str(info.value)
  assert '\n' not in message
  assert '3 meta-steps in a row up to step 5' in message
  assert 'meta.max_bad_steps=3' in message
  # step 4 was saved inside the streak: its meta-params are step 2's (finite)
  assert 'last good checkpoint is step 4 in /w/maml_cl/checkpoints' in message
  del saved


def test_isolated_bad_steps_are_skipped_and_the_run_finishes():
  _, learner, optimizer, state = setup()
  batches = lambda step: nan_batch() if step in (1, 4) else good_batch()
  saved = run_train(state, learner, optimizer, batches, steps=6, max_bad_steps=2)
  assert [s for s, _ in saved] == [2, 4, 6]


def test_a_huge_learning_rate_stops_with_one_line_and_saves_nothing_non_finite():
  _, learner, optimizer, state = setup(lr=1e38)
  with pytest.raises(UserError, match='non-finite|not finite') as info:
    run_train(state, learner, optimizer, lambda step: good_batch(), steps=40,
              max_bad_steps=3, save_every=1)
  assert '\n' not in str(info.value)


def test_keep_if_best_ignores_a_nan_validation():
  _, _, _, state = setup()
  state = meta.keep_if_best(state, jnp.float32(0.5))
  state = meta.keep_if_best(state, jnp.float32(np.nan))
  assert float(state['best_val_mse']) == 0.5
  state = meta.keep_if_best(state, jnp.float32(0.25))
  assert float(state['best_val_mse']) == 0.25


def test_a_validation_psnr_drop_is_a_warning_with_both_numbers(monkeypatch, caplog):
  _, learner, optimizer, state = setup()
  values = iter([0.01, 0.1, 0.011])      # 20 dB, then 10 dB (a 10 dB drop), then 19.6 dB
  monkeypatch.setattr(meta, 'make_validate',
                      lambda learner: lambda params, batch: jnp.float32(next(values)))
  caplog.set_level(logging.WARNING)
  for _ in meta.train(learner, optimizer, state, lambda step: good_batch(), good_batch(),
                      steps=6, val_every=2, log_every=2, save=lambda s: None, save_every=6,
                      val_drop_warn=3.0):
    pass
  drops = [r.getMessage() for r in caplog.records if 'below the best' in r.getMessage()]
  assert len(drops) == 1
  assert '10.00 dB at step 4' in drops[0] and 'best 20.00 dB' in drops[0]
