"""Meta-gradients: second order by default, checked against finite differences."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import learners, meta
from tests import helpers

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out


def meta_grad(name, first_order, dtype=jnp.float32):
  config = helpers.tiny_config()
  config.meta.first_order = first_order
  config.meta.inner_steps = 2
  config.methods[name].update(width=4, inner_lr=0.1)
  learner = learners.build(config, name, helpers.tiny_spec())
  episodes = jax.tree.map(lambda x: jnp.asarray(x, dtype), helpers.tiny_episodes(2))
  params = jax.tree.map(lambda p: p.astype(dtype), learner.init(jax.random.key(0)))
  loss = lambda p: meta.batch_loss(learner, p, episodes)[0]
  return loss, params, jax.grad(loss)(params)


@pytest.mark.parametrize('name', ['modular', 'maml_cl'])
def test_second_order_differs_from_first_order(name):
  _, _, second = meta_grad(name, first_order=False)
  _, _, first = meta_grad(name, first_order=True)
  diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(second),
                                                          jax.tree.leaves(first)))
  scale = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(second))
  assert diff > 1e-3 * scale


def test_second_order_matches_finite_differences():
  with jax.enable_x64(True):
    loss, params, grads = meta_grad('modular', first_order=False, dtype=jnp.float64)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grads)[0]
    rng = np.random.default_rng(0)
    for _ in range(3):   # directional derivatives along random directions
      v = jnp.asarray(rng.normal(size=flat.shape))
      v = v / jnp.linalg.norm(v)
      h = 1e-5
      fd = (loss(unravel(flat + h * v)) - loss(unravel(flat - h * v))) / (2 * h)
      np.testing.assert_allclose(float(g @ v), float(fd), rtol=1e-5, atol=1e-9)


def test_meta_step_lowers_the_meta_loss():
  config = helpers.tiny_config()
  learner = learners.build(config, 'modular', helpers.tiny_spec())
  config.meta.steps = 30
  optimizer = meta.outer_optimizer(config.meta)
  state = meta.init_state(learner, optimizer, jax.random.key(0))
  step = meta.make_meta_step(learner, optimizer)
  batch = jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert int(state['step']) == 30
  assert losses[-1] < 0.7 * losses[0]


def test_batch_indices_depend_only_on_seed_and_step():
  a = meta.batch_indices(0, 5, 100, 8)
  np.testing.assert_array_equal(a, meta.batch_indices(0, 5, 100, 8))
  assert not np.array_equal(a, meta.batch_indices(0, 6, 100, 8))
  assert len(set(a.tolist())) == 8
