"""Behaviour that defines each baseline (cl, er, ewc, mer, mol, oml), on tiny fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import learners
from mclnf_jax.learners import base, er, ewc
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from tests import helpers

NEW = ('cl', 'er', 'ewc', 'mer', 'mol', 'oml')
MODALITY = helpers.tiny_spec()
EPISODE = jax.tree.map(lambda x: jnp.asarray(x[0]), helpers.tiny_episodes(1))  # 4 x 16 px
FIRST_TASK = jax.tree.map(lambda x: x[:1], EPISODE._replace(query_x=None, query_y=None))


def tiny_config(**methods):
  """helpers.tiny_config with depth 4 (room for OML's 3 representation layers) and
  per-method overrides, e.g. er=dict(buffer_size=8)."""
  c = helpers.tiny_config()
  c.field.depth = 4
  for name, values in methods.items():
    c.methods[name].update(values)
  return c


def build(name, modality=MODALITY, **values):
  """A learner with its method settings from config.methods[name]."""
  return learners.build(tiny_config(**{name: values}), name, modality)


def build_plain(name, modality, values):
  return build(name, modality, **values)


def start(learner, seed=0):
  return learner.start(learner.init(jax.random.key(seed)))


def close(a, b, tol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def distance(a, b):
  return float(sum(jnp.sum(jnp.square(x - y)) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b))) ** 0.5)


def task_mse(learner, state, x, y):
  return float(jnp.mean(jnp.square(learner.predict(state, x) - y)))


# Every new learner: built by name, jittable with a traced step count.

@pytest.mark.parametrize('name', NEW)
def test_builds_by_name_and_adapts_with_static_or_traced_steps(name):
  learner = learners.build(tiny_config(), name, MODALITY)
  assert learner.name == name
  assert learner.meta_learned == (name in ('mol', 'oml'))
  assert learner.resumable == (name == 'mol')
  state0 = start(learner)
  traced = jax.jit(learner.adapt)(state0, EPISODE, jnp.int32(2))
  pred = learner.predict(traced, EPISODE.query_x)
  assert pred.shape == EPISODE.query_y.shape and bool(jnp.all(jnp.isfinite(pred)))
  close(learner.adapt(state0, EPISODE, 2), traced)      # lax.scan path == fori_loop path


@pytest.mark.parametrize('name', ['mol', 'oml'])
def test_meta_loss_is_finite_and_differentiable(name):
  learner = learners.build(tiny_config(), name, MODALITY)
  params = learner.init(jax.random.key(0))
  (loss, aux), grads = jax.jit(jax.value_and_grad(learner.meta_loss, has_aux=True))(
      params, EPISODE)
  assert np.isfinite(float(loss)) and np.isfinite(float(aux['mse']))
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_mol_fits_the_whole_signal_and_resumes():
  learner = learners.build(tiny_config(), 'mol', MODALITY)
  adapt = jax.jit(learner.adapt)
  state0 = start(learner)
  once = adapt(state0, EPISODE, jnp.int32(5))
  close(once, adapt(adapt(state0, EPISODE, jnp.int32(2)), EPISODE, jnp.int32(3)))
  setup = learners.build_setup(tiny_config(), 'mol', MODALITY)
  params, _ = base.fit(setup.loss, setup.apply, setup.tto_opt, state0['params'],
                       state0['opt'], EPISODE.query_x, EPISODE.query_y, 5)
  close(once['params'], params)   # offline: the whole signal at once, not task by task


# CL forgets; the modular method does not.

def test_cl_forgets_the_first_task_and_mcl_does_not():
  two = ImageTasks(shape=(8, 8), channels=3, grid=(1, 2))
  episode = jax.tree.map(jnp.asarray, two.episode(helpers.smooth_images(1, seed=3)[0]))
  x1, y1 = episode.context_x[0], episode.context_y[0]
  fast = dict(tto_opt='adam', tto_lr=1e-2)
  cl = build_plain('cl', task_spec(two), fast)
  mcl = build_plain('modular', task_spec(two), fast)
  steps = jnp.int32(60)

  cl_state0 = start(cl)
  after_1 = jax.jit(cl.adapt)(cl_state0, jax.tree.map(lambda a: a[:1], episode), steps)
  after_2 = jax.jit(cl.adapt)(cl_state0, episode, steps)
  learned, forgot = task_mse(cl, after_1, x1, y1), task_mse(cl, after_2, x1, y1)
  assert forgot > 3 * learned + 1e-3, (learned, forgot)

  # mcl: task 1's expert never sees task 2, so task 1 keeps what it learned.
  mcl_state = jax.jit(mcl.adapt)(start(mcl), episode, steps)
  kept = task_mse(mcl, mcl_state, x1, y1)
  assert kept < 2 * learned + 1e-3 and kept < forgot / 3, (learned, forgot, kept)


# OML: the inner loop adapts only the prediction layers.

def test_oml_inner_loop_adapts_only_the_prediction_layers():
  learner = build('oml', rln_layers=2)      # dense_0, dense_1 | dense_2, dense_3
  state0 = start(learner)
  state = jax.jit(learner.adapt)(state0, EPISODE, jnp.int32(3))
  assert sorted(state['rln']) == ['dense_0', 'dense_1']
  for a, b in zip(jax.tree.leaves(state0['rln']), jax.tree.leaves(state['rln'])):
    np.testing.assert_array_equal(a, b)                  # bit-identical
  for name in ('dense_2', 'dense_3'):
    assert distance(state0['pln'][name], state['pln'][name]) > 1e-4


@pytest.mark.parametrize('first_order', [False, True])
def test_oml_meta_gradient_reaches_the_representation(first_order):
  c = tiny_config(oml=dict(rln_layers=2))
  c.meta.first_order = first_order
  learner = learners.build(c, 'oml', MODALITY)
  params = learner.init(jax.random.key(0))
  grads = jax.jit(jax.grad(lambda p: learner.meta_loss(p, EPISODE)[0]))(params)
  for name in ('dense_0', 'dense_1', 'dense_2', 'dense_3'):
    assert float(jnp.abs(grads[name]['kernel']).max()) > 0, name


# ER and MER: a reservoir of earlier tasks only.

def labelled_episode():
  """EPISODE with targets that name the task: every target of task t is t + 1."""
  labels = jnp.arange(1.0, 5.0)[:, None, None] * jnp.ones_like(EPISODE.context_y)
  return EPISODE._replace(context_y=labels)


@pytest.mark.parametrize('name', ['er', 'mer'])
def test_replay_draws_only_earlier_tasks_and_buffer_keeps_its_size(name, monkeypatch):
  calls = []
  original = er.sample_replay

  def spy(buffer, key, n, x, y):
    rx, ry, active = original(buffer, key, n, x, y)
    jax.debug.callback(lambda *a: calls.append([np.asarray(v) for v in a]), ry, y, active)
    return rx, ry, active
  monkeypatch.setattr(er, 'sample_replay', spy)

  learner = build(name, buffer_size=8, replay_ratio=0.5)   # 8 slots < 16 samples a task
  episode = labelled_episode()
  state = jax.jit(learner.adapt)(start(learner), episode, jnp.int32(2))
  jax.effects_barrier()
  assert calls
  seen_active = set()
  for ry, y, active in calls:
    current = float(y[0, 0])
    if active:
      assert np.all(ry < current) and np.all(ry >= 1), (current, np.unique(ry))
      seen_active.add(current)
    else:
      assert current == 1.0          # only the first task has an empty buffer
  assert seen_active == {2.0, 3.0, 4.0}
  buffer = state['buffer']
  assert buffer['x'].shape == (8, 2) and buffer['y'].shape == (8, 3)
  assert int(buffer['count']) == 64 and int(er.filled(buffer)) == 8
  assert set(np.unique(buffer['y'])) <= {1.0, 2.0, 3.0, 4.0}


def test_reservoir_is_uniform_over_everything_offered():
  """After 64 samples offered in 4 tasks of 16, each is held with chance 8/64."""
  ids = jnp.arange(64.0).reshape(4, 16, 1)

  def run(key):
    buffer = er.empty_buffer(8, ids, ids, key)
    for t in range(4):
      buffer = er.reservoir_add(buffer, ids[t], ids[t])
    return buffer['y'][:, 0]
  held = np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(1), 2000)))
  for row in held[:50]:
    assert len(set(row.tolist())) == 8           # no sample held twice
  per_task = np.stack([(held // 16 == t).sum(1).mean() for t in range(4)])
  np.testing.assert_allclose(per_task, 2.0, atol=0.15)   # 16 * 8 / 64 each


@pytest.mark.parametrize('name,values', [
    ('er', dict(replay_ratio=0.5)),
    ('mer', dict(replay_ratio=0.5, beta=1.0, gamma=1.0, batches_per_step=1))])
def test_replay_is_cl_on_the_first_task_and_enters_later_steps(name, values):
  """Plain SGD on task 1 (empty buffer, MER with beta = gamma = 1 and one batch);
  replay makes the later tasks differ from CL."""
  sgd = dict(tto_opt='sgd', tto_lr=1e-2)
  learner, cl = build(name, **sgd, **values), build_plain('cl', MODALITY, sgd)
  state0 = start(learner)
  adapt, adapt_cl = jax.jit(learner.adapt), jax.jit(cl.adapt)
  steps = jnp.int32(3)
  close(adapt(state0, FIRST_TASK, steps)['params'],
        adapt_cl(start(cl), FIRST_TASK, steps)['params'])
  assert distance(adapt(state0, EPISODE, steps)['params'],
                  adapt_cl(start(cl), EPISODE, steps)['params']) > 1e-4


def test_mer_reptile_interpolations():
  """Empty buffer, s = 2 batches: theta_b = theta_{b-1} + beta (SGD step - theta_{b-1}),
  then theta <- theta_0 + gamma (theta_2 - theta_0), every step."""
  alpha, beta, gamma = 1e-2, 0.5, 0.25
  learner = build('mer', tto_opt='sgd', tto_lr=alpha, beta=beta, gamma=gamma,
                  batches_per_step=2)
  state0 = start(learner)
  got = jax.jit(learner.adapt)(state0, FIRST_TASK, jnp.int32(3))['params']
  setup = learners.build_setup(tiny_config(), 'mer', MODALITY)
  x, y = FIRST_TASK.context_x[0], FIRST_TASK.context_y[0]
  grad = jax.grad(lambda p: setup.loss(setup.apply, p, x, y))
  theta = state0['params']
  for _ in range(3):
    inner = theta
    for _ in range(2):
      inner = jax.tree.map(lambda p, g: p - beta * alpha * g, inner, grad(inner))
    theta = jax.tree.map(lambda a, b: a + gamma * (b - a), theta, inner)
  close(got, theta)


# EWC: a Fisher-weighted pull towards the previous task's params.

def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_the_fisher():
  learner = learners.build(tiny_config(), 'ewc', MODALITY)
  anchor = learner.init(jax.random.key(0))
  moved = learner.init(jax.random.key(1))
  f = jax.tree.map(lambda p: jnp.abs(p) + 0.1, anchor)
  assert float(ewc.penalty(anchor, f, anchor, 3.0)) == 0.0
  one = float(ewc.penalty(moved, f, anchor, 3.0))
  two = float(ewc.penalty(moved, jax.tree.map(lambda a: 2 * a, f), anchor, 3.0))
  manual = 1.5 * sum(float(jnp.sum(a * (m - b) ** 2)) for a, m, b in
                     zip(jax.tree.leaves(f), jax.tree.leaves(moved), jax.tree.leaves(anchor)))
  np.testing.assert_allclose(one, manual, rtol=1e-5)
  assert one > 0 and two == pytest.approx(2 * one, rel=1e-5)


def test_ewc_with_huge_lambda_holds_the_first_tasks_params():
  fast = dict(tto_opt='adam', tto_lr=1e-2)
  learner, cl = build('ewc', ewc_lambda=1e8, **fast), build_plain('cl', MODALITY, fast)
  steps = jnp.int32(30)
  state0 = start(learner)
  after_1 = jax.jit(learner.adapt)(state0, FIRST_TASK, steps)
  close(after_1['params'], jax.jit(cl.adapt)(start(cl), FIRST_TASK, steps)['params'], 1e-4)
  ewc_final = jax.jit(learner.adapt)(state0, EPISODE, steps)['params']
  cl_final = jax.jit(cl.adapt)(start(cl), EPISODE, steps)['params']
  ewc_drift = distance(ewc_final, after_1['params'])
  cl_drift = distance(cl_final, after_1['params'])
  assert ewc_drift < 0.2 * cl_drift, (ewc_drift, cl_drift)
