"""NeRF on fresh rays: each task's context set is a pool of its cell's rays; every inner
and test-time step fits a fresh batch drawn from it, a pure function of (seed, block,
cell, step); the meta-loss is taken on other rays; training renders jittered samples,
metrics midpoints. Grid modalities keep full batches, bit for bit."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import experiment, learners
from mclnf_jax.data import city
from mclnf_jax.data.scene import SceneSignal, views_by_cell
from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.scene import SceneTasks
from tests import helpers

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

BATCH, TTO_BATCH, QUERY = 8, 16, 8


@pytest.fixture(scope='module')
def blocks():
  train, test, heldout = city.make_city_dataset(num_blocks=3, seed=0, height=8, width=8,
                                                views_per_cell=2, heldout_views_per_cell=1)
  return train, test, heldout


def scene_tasks(block, **kw) -> SceneTasks:
  values = dict(grid=(2, 2), bounds=tuple(block.bounds), near=block.near, far=block.far,
                image_shape=(8, 8), query_views=1, rays_per_task=BATCH,
                tto_rays_per_task=TTO_BATCH, query_rays_per_task=QUERY, num_samples=4)
  return SceneTasks(**{**values, **kw})


@pytest.fixture(scope='module')
def scene(blocks):
  train, _, _ = blocks
  tasks = scene_tasks(train[0])
  episode = jax.tree.map(jnp.asarray, tasks.episode(SceneSignal(train[0], None)))
  return tasks, episode


def scene_config(**meta):
  c = helpers.tiny_config()
  c.field.update(kind='nerf', depth=2, pos_freqs=2, dir_freqs=1, skip=False)
  c.meta.update(inner_steps=2, **meta)
  for name in c.methods:
    c.methods[name].update(width=8)
  return c


def build(tasks, name, config=None):
  config = config or scene_config()
  return (learners.build(config, name, task_spec(tasks)),
          learners.build_setup(config, name, task_spec(tasks)))


def rows(a) -> set:
  return set(map(tuple, np.asarray(a)[..., :6].reshape(-1, 6).round(6).tolist()))


def leaves_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------ the pool and the draw


def test_pool_holds_every_ray_of_each_cell_in_a_seeded_order(blocks, scene):
  train, _, _ = blocks
  tasks, episode = scene
  assert episode.context_x.shape == (4, 2 * 8 * 8, 6)    # two 8x8 views per cell
  origins, dirs = train[0].rays()
  rays = np.concatenate([origins, dirs], -1)
  for t, views in enumerate(views_by_cell(train[0], (2, 2), require_all=True)):
    assert rows(episode.context_x[t]) == rows(rays[views])
  again = tasks.episode(SceneSignal(train[0], None))
  np.testing.assert_array_equal(again.context_x, episode.context_x)
  other = scene_tasks(train[0], seed=1).episode(SceneSignal(train[0], None))
  assert not np.array_equal(other.context_x, episode.context_x)
  # A fixed draw per cell: distinct rays when the cell has enough, else every ray once
  # per round.
  small = scene_tasks(train[0], pool_rays=50).episode(SceneSignal(train[0], None))
  assert small.context_x.shape == (4, 50, 6) and len(rows(small.context_x[0])) == 50
  large = scene_tasks(train[0], pool_rays=300).episode(SceneSignal(train[0], None))
  assert rows(large.context_x[1]) == rows(episode.context_x[1])


def test_batch_sizes_come_from_the_scene_keys(blocks):
  train, test, heldout = blocks
  spec = task_spec(scene_tasks(train[0]))
  assert (spec.batch, spec.tto_batch, spec.query) == (BATCH, TTO_BATCH, QUERY)
  spec = task_spec(scene_tasks(train[0], tto_rays_per_task=0, query_rays_per_task=0))
  assert (spec.batch, spec.tto_batch, spec.query) == (BATCH, BATCH, BATCH)
  # Meta-training and meta-test blocks hold pools alike; the batch sizes differ.
  tasks = scene_tasks(train[0])
  meta_test = tasks.episode(SceneSignal(test[0], heldout[0]))
  assert meta_test.context_x.shape == (4, 128, 6) and meta_test.query_x.shape == (64, 6)


def test_two_inner_steps_see_different_rays_and_the_draw_is_a_pure_function(scene):
  tasks, episode = scene
  pool_x, pool_y = episode.context_x[0], episode.context_y[0]
  draws = [tasks.draw(pool_x, pool_y, k, BATCH) for k in range(3)]
  assert all(d[0].shape == (BATCH, 7) for d in draws)
  assert not rows(draws[0][0]) & rows(draws[1][0])
  # Same (pool, step): the same rays and jitter, traced or not.
  traced = jax.jit(tasks.draw, static_argnums=3)(pool_x, pool_y, jnp.int32(1), BATCH)
  leaves_equal(traced, draws[1])
  # Step k wraps around the pool: a sweep through every ray, then again.
  m = pool_x.shape[0]
  lap = tasks.draw(pool_x, pool_y, m // BATCH, BATCH)
  np.testing.assert_array_equal(lap[0][:, :6], draws[0][0][:, :6])
  assert not np.array_equal(lap[0][:, 6], draws[0][0][:, 6])   # new jitter on the next lap


def test_adapt_fits_batch_k_at_step_k(scene):
  """Each expert's adaptation == full-batch steps on draws 0, 1, 2 of its own pool."""
  tasks, episode = scene
  learner, setup = build(tasks, 'modular')
  meta = learner.init(jax.random.key(0))
  state = jax.jit(learner.adapt)(learner.start(meta), episode, jnp.int32(3))
  for t in range(4):
    params, opt_state = meta, setup.tto_opt.init(meta)
    for k in range(3):
      x, y = tasks.draw(episode.context_x[t], episode.context_y[t], k, TTO_BATCH)
      params, opt_state = base.fit(setup.loss, setup.apply, setup.tto_opt, params,
                                   opt_state, x, y, 1)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda p: p[t], state['params'])),
                    jax.tree.leaves(params)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize('name', ['modular', 'ol'])
def test_scan_fori_rerun_and_chained_adaptations_fit_the_same_rays(scene, name):
  tasks, episode = scene
  learner, _ = build(tasks, name)
  state0 = learner.start(learner.init(jax.random.key(0)))
  adapt = jax.jit(learner.adapt)
  traced = adapt(state0, episode, jnp.int32(3))
  leaves_equal(traced, adapt(state0, episode, jnp.int32(3)))            # a rerun
  static = jax.jit(learner.adapt, static_argnums=2)(state0, episode, 3)  # lax.scan
  for a, b in zip(jax.tree.leaves(static), jax.tree.leaves(traced)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  chained = adapt(adapt(state0, episode, jnp.int32(2)), episode, jnp.int32(1))
  for a, b in zip(jax.tree.leaves(chained), jax.tree.leaves(traced)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(traced['draws']) == 3


# ------------------------------------------------------------------------ the meta-loss


def test_meta_loss_query_rays_are_not_the_inner_loops(scene):
  tasks, episode = scene
  learner, setup = build(tasks, 'modular')
  query = setup.queries(episode)
  assert query.context_x.shape == (4, QUERY, 7)
  for t in range(4):
    fitted = set()
    for k in range(setup.inner_steps):
      fitted |= rows(tasks.draw(episode.context_x[t], episode.context_y[t], k, BATCH)[0])
    assert not fitted & rows(query.context_x[t])
  # The meta-loss is the experts' loss on those query rays after the inner loop.
  meta = learner.init(jax.random.key(0))
  loss, aux = jax.jit(learner.meta_loss)(meta, episode)
  opt = setup.inner_for(meta)
  expected = []
  for t in range(4):
    x, y = episode.context_x[t], episode.context_y[t]
    params, _ = base.fit(setup.loss, setup.apply, opt, meta, opt.init(meta), x, y,
                         setup.inner_steps, batches=setup.inner_batches)
    expected.append(setup.loss(setup.apply, params, query.context_x[t], query.context_y[t]))
  np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-4)
  assert np.isfinite(aux['mse'])


def test_a_pool_too_small_for_separate_query_rays_is_refused(blocks):
  train, _, _ = blocks
  tasks = scene_tasks(train[0], pool_rays=20)      # 2 steps x 8 + 8 query rays > 20
  episode = jax.tree.map(jnp.asarray, tasks.episode(SceneSignal(train[0], None)))
  learner, _ = build(tasks, 'maml_cl')
  with pytest.raises(UserError, match='separate query rows'):
    learner.meta_loss(learner.init(jax.random.key(0)), episode)


@pytest.mark.parametrize('name,meta_sgd', [('modular', ''), ('maml_cl', ''), ('mol', ''),
                                           ('oml', ''), ('modular', 'tensor')])
def test_second_order_meta_gradient_through_fresh_batches_is_finite(scene, name, meta_sgd):
  tasks, episode = scene
  config = scene_config()
  assert not config.meta.first_order
  config.methods[name].meta_sgd = meta_sgd
  if name == 'oml':
    config.methods.oml.rln_layers = 1
  learner, _ = build(tasks, name, config)
  meta = learner.init(jax.random.key(0))
  grads = jax.jit(jax.grad(lambda p: learner.meta_loss(p, episode)[0]))(meta)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and max(norms) > 0


# ------------------------------------------------------------- stratified training rays


def test_training_renders_are_jittered_and_metric_renders_are_midpoints(scene):
  tasks, episode = scene
  learner, setup = build(tasks, 'ol')
  params = learner.init(jax.random.key(0))
  pool_x, pool_y = episode.context_x[0][:BATCH], episode.context_y[0][:BATCH]
  predict = jax.jit(setup.apply)
  first = tasks.draw(pool_x, pool_y, 0, BATCH)[0]    # a pool of one batch: the same rays
  second = tasks.draw(pool_x, pool_y, 1, BATCH)[0]   # at every step, new jitter
  np.testing.assert_array_equal(first[:, :6], second[:, :6])
  assert not np.allclose(predict(params, first), predict(params, second))
  leaves_equal(predict(params, first), predict(params, first))
  midpoint = predict(params, pool_x)                 # 6 columns: metrics and figures
  leaves_equal(midpoint, predict(params, pool_x))
  assert not np.allclose(midpoint, predict(params, first))
  # stratified=False: training rays carry no seed and render at midpoints too.
  plain = dataclasses.replace(tasks, stratified=False)
  x, _ = plain.draw(pool_x, pool_y, 1, BATCH)
  assert x.shape == (BATCH, 6)
  np.testing.assert_allclose(predict(params, x), midpoint, rtol=1e-6)


# ----------------------------------------------------------- every scene learner runs


@pytest.mark.parametrize('name', ['er', 'ewc', 'meil_nerf', 'mer', 'oml', 'cl'])
def test_learners_with_their_own_loops_adapt_on_fresh_rays(scene, name):
  tasks, episode = scene
  config = scene_config()
  config.methods.er.update(buffer_fraction=0.0625)      # 32 of 512 rays
  config.methods.mer.update(buffer_fraction=0.0625)
  config.methods.meil_nerf.update(replay_size=8)
  config.methods.oml.update(rln_layers=1)
  learner, _ = build(tasks, name, config)
  state0 = learner.start(learner.init(jax.random.key(0)))
  adapt = jax.jit(learner.adapt)
  state = adapt(state0, episode, jnp.int32(2))
  leaves_equal(state, adapt(state0, episode, jnp.int32(2)))
  pred = learner.predict(state, episode.query_x)
  assert pred.shape == episode.query_y.shape and np.isfinite(pred).all()


# ------------------------------------------------------------------ grids: unchanged


def test_grid_modalities_keep_full_batches_bit_for_bit():
  spec = helpers.tiny_spec()
  assert (spec.batch, spec.tto_batch, spec.query, spec.draw) == (0, 0, 0, None)
  episode = jax.tree.map(lambda x: jnp.asarray(x[0]), helpers.tiny_episodes(1))
  config = helpers.tiny_config()
  for name in ('ol', 'cl', 'modular'):
    learner = learners.build(config, name, spec)
    s = learners.build_setup(config, name, spec)
    meta = learner.init(jax.random.key(0))
    state = jax.jit(learner.adapt)(learner.start(meta), episode, jnp.int32(3))

    @jax.jit
    def by_hand(meta, episode, steps):
      """The full-batch loops as they were: whole signal, task by task, expert by expert."""
      opt = s.tto_opt
      if name == 'ol':
        return base.fit(s.loss, s.apply, opt, meta, opt.init(meta),
                        *base.whole_signal(episode), steps)[0]
      if name == 'cl':
        params, opt_state = meta, opt.init(meta)
        for t in range(4):
          params, opt_state = base.fit(s.loss, s.apply, opt, params, opt_state,
                                       episode.context_x[t], episode.context_y[t], steps)
        return params
      fit = lambda x, y: base.fit(s.loss, s.apply, opt, meta, opt.init(meta), x, y, steps)[0]
      return jax.vmap(fit)(episode.context_x, episode.context_y)
    expected = by_hand(meta, episode, jnp.int32(3))
    if name == 'modular':
      for t in range(4):
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda p: p[t], state['params'])),
                        jax.tree.leaves(jax.tree.map(lambda p: p[t], expected))):
          np.testing.assert_array_equal(a, b)
    elif name == 'ol':
      leaves_equal(state['params'], expected)
    else:   # over_tasks scans where by_hand unrolls: equal up to float reassociation
      for a, b in zip(jax.tree.leaves(state['params']), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # The meta-loss is still taken on each task's own context.
  learner = learners.build(config, 'modular', spec)
  s = learners.build_setup(config, 'modular', spec)
  assert s.queries(episode) is episode


def test_successive_meta_steps_fit_successive_batches_of_each_pool(scene):
  tasks, episode = scene
  inner_steps, pool = 2, episode.context_x.shape[1]

  def fitted(e, first=0):        # the rays (6 columns) an inner loop fits on task 0
    return np.concatenate([np.asarray(tasks.draw(e.context_x[0], e.context_y[0], k, BATCH)[0])
                           for k in range(first, first + inner_steps)])[:, :6]
  steps = [experiment.rolled_pools(episode, s * inner_steps * BATCH) for s in range(3)]
  assert not rows(fitted(steps[0])) & rows(fitted(steps[1]))
  assert not rows(fitted(steps[1])) & rows(fitted(steps[2]))
  # Meta-step 1's inner loop fits the rays meta-step 0's would have fitted next.
  np.testing.assert_array_equal(fitted(steps[1]), fitted(episode, inner_steps))
  for e in steps:                # the query rays stay apart from the fitted ones
    query = np.asarray(tasks.draw(e.context_x[0], e.context_y[0], base.QUERY, QUERY)[0])
    assert not rows(query[:, :6]) & rows(fitted(e))
  wrapped = experiment.rolled_pools(episode, pool * 3)          # cyclic
  np.testing.assert_array_equal(wrapped.context_x, episode.context_x)
  grid = helpers.tiny_episodes(1)
  assert experiment.rolled_pools(grid, 0) is grid
