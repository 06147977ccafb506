"""`meta.remat`: what the meta-gradient keeps of each inner step changes memory and time,
never the meta-gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import learners, meta
from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from tests import helpers

ONE = jax.tree.map(lambda x: jnp.asarray(x[0]), helpers.tiny_episodes(1))


def meta_grad(name, policy, inner_steps=3):
  config = helpers.tiny_config(name)
  config.meta.update(remat=policy, inner_steps=inner_steps)
  learner = learners.build(config, name, helpers.tiny_spec())
  params = learner.init(jax.random.key(0))
  fn = jax.jit(jax.grad(lambda p: learner.meta_loss(p, ONE)[0]))
  return fn(params), fn.lower(params).compile()


@pytest.mark.parametrize('name', ['modular', 'maml_cl'])
def test_every_policy_gives_the_same_meta_gradient(name):
  reference, _ = meta_grad(name, 'step')
  for policy in ('dots', 'none'):
    grads, _ = meta_grad(name, policy)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
      np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-7)


def test_keeping_every_activation_plans_more_memory_than_recomputing():
  def temp_bytes(policy):
    return meta_grad('modular', policy, inner_steps=8)[1].memory_analysis().temp_size_in_bytes
  assert temp_bytes('none') > temp_bytes('step')


def test_the_policy_is_the_one_in_force_when_the_loop_is_traced():
  seen = []
  original = jax.checkpoint

  def spy(fn, **kwargs):
    seen.append(kwargs.get('policy'))
    return original(fn, **kwargs)
  jax.checkpoint, step = spy, lambda c: c + 1.0
  try:
    for policy in base.REMAT_POLICIES:
      with base.remat(policy):
        jax.make_jaxpr(lambda c: base.run_steps(step, c, 2))(0.0)
  finally:
    jax.checkpoint = original
  assert seen == [None, jax.checkpoint_policies.checkpoint_dots]   # step, dots; none: no remat


def test_an_unknown_policy_is_a_one_line_error():
  config = helpers.tiny_config('modular')
  config.meta.remat = 'everything'
  with pytest.raises(UserError, match='meta.remat='):
    learners.build(config, 'modular', helpers.tiny_spec())


def test_a_meta_batch_of_one_is_not_vmapped():
  """meta.batch_loss on one episode gives the vmapped batch's loss, aux and meta-gradient,
  from a program without what XLA:CPU adds around a size-1 vmapped axis: transposed
  matmuls and the fast sine evaluated twice (once per consumer shape)."""
  config = helpers.tiny_config('modular')
  config.field.sine = 'fast'
  learner = learners.build(config, 'modular', helpers.tiny_spec())
  params, batch = learner.init(jax.random.key(0)), helpers.tiny_episodes(1)

  def vmapped(p):
    losses, aux = jax.vmap(learner.meta_loss, in_axes=(None, 0))(p, batch)
    return losses.mean(), jax.tree.map(jnp.mean, aux)
  results, texts = [], []
  for fn in (vmapped, lambda p: meta.batch_loss(learner, p, batch)):
    step = jax.jit(jax.value_and_grad(fn, has_aux=True))
    results.append(step(params))
    texts.append(step.lower(params).compile().as_text())
  for ours, theirs in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[0])):
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-7)
  assert ' transpose(' in texts[0] and ' transpose(' not in texts[1]
  sines = [t.count('round-nearest-even(') for t in texts]     # one per fast sin or cos
  assert sines[1] < sines[0]
