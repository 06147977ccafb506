"""Meta-SGD: learned inner learning rates as meta-params, used in the inner loop and at
test time, trained with their own outer rate, saved with the rest of the meta-state."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import checkpoints, learners, meta
from tests import helpers

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

META_LEARNED = ('modular', 'maml_cl', 'mol', 'oml')
EPISODES = jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))
ONE = jax.tree.map(lambda x: x[0], EPISODES)


def build(name, meta_sgd='tensor', **meta_values):
  config = helpers.tiny_config(name)
  config.field.depth = 4                       # room for OML's representation layers
  config.methods[name].meta_sgd = meta_sgd
  config.meta.update(meta_values)
  return config, learners.build(config, name, helpers.tiny_spec())


@pytest.mark.parametrize('name', META_LEARNED)
def test_at_its_initial_rates_it_is_plain_sgd(name):
  _, plain = build(name, meta_sgd='')
  _, learned = build(name)
  key = jax.random.key(0)
  params, meta_params = plain.init(key), learned.init(key)
  rates = jax.tree.leaves(meta_params['log_lr'])
  assert all(r.shape == () for r in rates)
  np.testing.assert_allclose(np.exp(rates), 1e-2, rtol=1e-6)      # the config's inner_lr
  np.testing.assert_allclose(learned.meta_loss(meta_params, ONE)[0],
                             plain.meta_loss(params, ONE)[0], rtol=1e-5)


@pytest.mark.parametrize('name', META_LEARNED)
def test_the_meta_gradient_reaches_every_rate_the_inner_loop_uses(name):
  _, learner = build(name)
  meta_params = learner.init(jax.random.key(0))
  grads = jax.grad(lambda p: learner.meta_loss(p, ONE)[0])(meta_params)['log_lr']
  moved = {layer: float(jnp.abs(jnp.stack(jax.tree.leaves(g))).max())
           for layer, g in grads.items()}
  used = [l for l in moved if moved[l] > 0]
  assert used and all(np.isfinite(v) for v in moved.values())
  if name == 'oml':   # only the prediction layers adapt in OML's inner loop
    assert [l for l in moved if moved[l] == 0] == sorted(moved)[:3]
  else:
    assert used == list(moved)


def test_per_parameter_rates_have_the_shape_of_their_parameters():
  _, learner = build('modular', meta_sgd='param')
  meta_params = learner.init(jax.random.key(0))
  for p, r in zip(jax.tree.leaves(meta_params['init']), jax.tree.leaves(meta_params['log_lr'])):
    assert p.shape == r.shape


def test_rates_train_with_their_own_outer_rate():
  config, learner = build('modular', rates_lr=0.0)
  state = meta.init_state(learner, meta.outer_optimizer(config.meta), jax.random.key(0))
  before = jax.tree.map(jnp.copy, state['params'])
  state, _ = meta.make_meta_step(learner, meta.outer_optimizer(config.meta))(state, EPISODES)
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                                jax.tree.leaves(b)))
  assert same(state['params']['log_lr'], before['log_lr'])
  assert not same(state['params']['init'], before['init'])
  config, learner = build('modular', rates_lr=1e-2)
  state = meta.init_state(learner, meta.outer_optimizer(config.meta), jax.random.key(0))
  state, _ = meta.make_meta_step(learner, meta.outer_optimizer(config.meta))(state, EPISODES)
  assert not same(state['params']['log_lr'], before['log_lr'])


def test_test_time_adaptation_uses_the_learned_rates():
  _, learner = build('modular')
  meta_params = learner.init(jax.random.key(0))
  frozen = {**meta_params, 'log_lr': jax.tree.map(lambda r: r - 100.0, meta_params['log_lr'])}
  adapt = jax.jit(learner.adapt)
  for rates, moves in ((meta_params, True), (frozen, False)):
    start = learner.start(rates)
    after = adapt(start, ONE, jnp.int32(3))
    change = max(float(jnp.abs(a - b).max()) for a, b in
                 zip(jax.tree.leaves(after['params']), jax.tree.leaves(start['params'])))
    assert (change > 1e-6) == moves, change


def test_the_rates_are_saved_and_restored_with_the_meta_state(tmp_path):
  config, learner = build('maml_cl')
  init_fn = lambda: meta.init_state(learner, meta.outer_optimizer(config.meta),
                                    jax.random.key(0))
  state = init_fn()
  state['params']['log_lr'] = jax.tree.map(lambda r: r + 0.5, state['params']['log_lr'])
  checkpoints.save(str(tmp_path), state)
  _, back = checkpoints.restore(str(tmp_path), init_fn)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
    np.testing.assert_array_equal(a, b)


def test_only_meta_learned_methods_take_it():
  helpers.one_line_error('ol is not meta-learned', build, 'ol')
  helpers.one_line_error("meta_sgd='layer'", build, 'modular', meta_sgd='layer')
