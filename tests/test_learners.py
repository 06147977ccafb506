"""Behaviour that defines each learner, checked on tiny fields."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import learners
from mclnf_jax.learners import base
from tests import helpers

EPS = helpers.tiny_episodes(1)
EPISODE = jax.tree.map(lambda x: jnp.asarray(x[0]), EPS)
MODALITY = helpers.tiny_spec()
CONFIG = helpers.tiny_config()


def build(name):
  return learners.build(CONFIG, name, MODALITY)


@pytest.fixture(scope='module')
def adapt_fns():
  """One jitted adapt per learner, shared across tests."""
  return {name: jax.jit(build(name).adapt) for name in ('ol', 'maml_cl', 'modular')}


def close(a, b, tol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_modular_each_expert_learns_only_its_task(adapt_fns):
  """Parallel experts == each expert alone on its own task from the shared init."""
  mcl = build('modular')
  shared = mcl.init(jax.random.key(0))
  state = adapt_fns['modular'](mcl.start(shared), EPISODE, jnp.int32(3))
  setup = learners.build_setup(CONFIG, 'modular', MODALITY)
  for t in range(4):
    params, _ = base.fit(setup.loss, setup.apply, setup.tto_opt, shared,
                         setup.tto_opt.init(shared), EPISODE.context_x[t],
                         EPISODE.context_y[t], 3)
    close(jax.tree.map(lambda p: p[t], state['params']), params)


@pytest.mark.parametrize('name', ['ol', 'modular'])
def test_resumable_learners_chain_step_counts(adapt_fns, name):
  learner = build(name)
  assert learner.resumable
  state0 = learner.start(learner.init(jax.random.key(0)))
  once = adapt_fns[name](state0, EPISODE, jnp.int32(5))
  twice = adapt_fns[name](adapt_fns[name](state0, EPISODE, jnp.int32(2)), EPISODE, jnp.int32(3))
  close(once, twice)


def test_maml_cl_trains_tasks_in_order(adapt_fns):
  learner = build('maml_cl')
  assert not learner.resumable
  params = learner.init(jax.random.key(0))
  state = adapt_fns['maml_cl'](learner.start(params), EPISODE, jnp.int32(2))
  setup = learners.build_setup(CONFIG, 'maml_cl', MODALITY)
  opt_state = setup.tto_opt.init(params)
  for t in range(4):     # task after task, 2 steps each, on one network
    params, opt_state = base.fit(setup.loss, setup.apply, setup.tto_opt, params, opt_state,
                                 EPISODE.context_x[t], EPISODE.context_y[t], 2)
  close(state['params'], params)


def test_scan_and_fori_paths_agree():
  """Static step counts (scan, meta-training) and traced ones (evaluation) match."""
  learner = build('modular')
  state0 = learner.start(learner.init(jax.random.key(0)))
  static = learner.adapt(state0, EPISODE, 3)
  close(static, jax.jit(learner.adapt)(state0, EPISODE, jnp.int32(3)))


@pytest.mark.slow
def test_modular_prediction_routes_to_task_experts(adapt_fns):
  mcl = build('modular')
  state = adapt_fns['modular'](mcl.start(mcl.init(jax.random.key(0))), EPISODE, jnp.int32(2))
  whole = mcl.predict(state, EPISODE.query_x)
  setup = learners.build_setup(CONFIG, 'modular', MODALITY)
  per_task = jax.vmap(setup.apply)(state['params'], EPISODE.context_x)
  # The whole-image prediction restricted to task t equals expert t on task t.
  lookup = {tuple(x): i for i, x in enumerate(np.asarray(EPISODE.query_x).tolist())}
  for t in range(4):
    idx = [lookup[tuple(x)] for x in np.asarray(EPISODE.context_x[t]).tolist()]
    np.testing.assert_allclose(whole[np.array(idx)], per_task[t], rtol=1e-5, atol=1e-6)


def test_unknown_learner_is_a_user_error():
  with pytest.raises(learners.UserError, match='unknown learner'):
    learners.build(CONFIG, 'nope', MODALITY)


def test_the_trivial_row_predicts_each_signals_own_mean():
  learner = build('mean')
  state = jax.jit(learner.adapt)(learner.start(learner.init(jax.random.key(0))), EPISODE,
                                 jnp.int32(5))
  whole = learner.predict(state, EPISODE.query_x)
  expected = EPISODE.query_y.reshape(-1, EPISODE.query_y.shape[-1]).mean(0)
  np.testing.assert_allclose(whole, np.broadcast_to(expected, whole.shape), rtol=1e-5)
