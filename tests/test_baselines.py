"""Behaviour that defines each baseline (cl, er, ewc, mer, mol, oml), on tiny fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import fisher, learners
from mclnf_jax.learners import base, er, ewc, mer, oml
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from tests import helpers

NEW = ('cl', 'er', 'ewc', 'mer', 'mol', 'oml')
MODALITY = helpers.tiny_spec()
EPISODE = jax.tree.map(lambda x: jnp.asarray(x[0]), helpers.tiny_episodes(1))  # 4 x 16 px
FIRST_TASK = jax.tree.map(lambda x: x[:1], EPISODE._replace(query_x=None, query_y=None))


def tiny_config(**methods):
  """helpers.tiny_config with depth 4 (room for OML's 3 representation layers) and
  per-method overrides, e.g. er=dict(buffer_fraction=0.125)."""
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

@pytest.mark.slow
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

  learner = build(name, buffer_fraction=0.125, replay_ratio=0.5)   # 8 of 64: < 16 a task
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


@pytest.mark.parametrize('name,values,rate', [
    ('er', dict(replay_ratio=0.5), 1),
    ('mer', dict(replay_ratio=0.5, beta=1.0, gamma=1.0, batches_per_step=1,
                 steps_per_batch=2), 2)])
def test_replay_is_cl_on_the_first_task_and_enters_later_steps(name, values, rate):
  """Plain SGD on task 1 (empty buffer; MER with beta = gamma = 1, one batch of one
  current and one replayed example, so its example rate is tto_lr / 2, the replayed one
  skipped); replay makes the later tasks differ from CL."""
  learner = build(name, tto_opt='sgd', tto_lr=rate * 1e-2, **values)
  cl = build_plain('cl', MODALITY, dict(tto_opt='sgd', tto_lr=1e-2))
  state0 = start(learner)
  adapt, adapt_cl = jax.jit(learner.adapt), jax.jit(cl.adapt)
  steps = jnp.int32(3)
  close(adapt(state0, FIRST_TASK, steps)['params'],
        adapt_cl(start(cl), FIRST_TASK, steps)['params'])
  assert distance(adapt(state0, EPISODE, steps)['params'],
                  adapt_cl(start(cl), EPISODE, steps)['params']) > 1e-4


@pytest.mark.slow
def test_mer_reptile_interpolations():
  """Empty buffer, s = 2 batches of one example (the task): theta_b = theta_{b-1} +
  beta (SGD step - theta_{b-1}), then theta <- theta_0 + gamma (theta_2 - theta_0), every
  step, the example rate alpha = tto_lr / (s k beta gamma)."""
  lr, beta, gamma, s = 1e-2, 0.5, 0.25, 2
  alpha = lr / (s * 1 * beta * gamma)
  learner = build('mer', tto_opt='sgd', tto_lr=lr, beta=beta, gamma=gamma,
                  batches_per_step=s, steps_per_batch=1, replay_ratio=0.0)
  state0 = start(learner)
  got = jax.jit(learner.adapt)(state0, FIRST_TASK, jnp.int32(3))['params']
  setup = learners.build_setup(tiny_config(), 'mer', MODALITY)
  x, y = FIRST_TASK.context_x[0], FIRST_TASK.context_y[0]
  grad = jax.grad(lambda p: setup.loss(setup.apply, p, x, y))
  theta = state0['params']
  for _ in range(3):
    inner = theta
    for _ in range(s):
      inner = jax.tree.map(lambda p, g: p - beta * alpha * g, inner, grad(inner))
    theta = jax.tree.map(lambda a, b: a + gamma * (b - a), theta, inner)
  close(got, theta)


@pytest.mark.slow
def test_mer_takes_one_sequential_step_per_example_with_replay_mixed_in(monkeypatch):
  """Sample level (steps_per_batch 0): each batch is one SGD step per sample, every
  current sample exactly once and as many replayed ones (replay_ratio 0.5), the
  replayed ones from earlier tasks only; s = 2 batches per test-time step."""
  calls = []
  original = mer.example_step

  def spy(opt, loss, apply_fn, params, opt_state, ex, ey):
    jax.debug.callback(lambda *a: calls.append([np.asarray(v) for v in a]), ex, ey)
    return original(opt, loss, apply_fn, params, opt_state, ex, ey)
  monkeypatch.setattr(mer, 'example_step', spy)
  learner = build('mer', buffer_fraction=0.5, replay_ratio=0.5, steps_per_batch=0,
                  batches_per_step=2)
  episode = labelled_episode()
  two = jax.tree.map(lambda a: a[:2], episode._replace(query_x=None, query_y=None))
  jax.jit(learner.adapt)(start(learner), two, jnp.int32(1))
  jax.effects_barrier()
  m = episode.context_x.shape[1]
  assert len(calls) == 2 * 2 * 2 * m            # tasks x batches x (m current + m replayed)
  assert all(ex.shape == (1, 2) for ex, _ in calls)          # one sample a step
  for b in range(4):                                          # task 1 then task 2, s = 2
    batch = calls[b * 2 * m:(b + 1) * 2 * m]
    task = b // 2
    current = [ex[0] for ex, ey in batch if ey[0, 0] == task + 1]
    replayed = [ey[0, 0] for _, ey in batch if ey[0, 0] != task + 1]
    if task == 1:     # every current sample once; m replayed ones, of task 1 only
      assert len(current) == m and set(replayed) == {1.0} and len(replayed) == m
      np.testing.assert_array_equal(np.sort(np.stack(current), 0),
                                    np.sort(np.asarray(episode.context_x[1]), 0))
      assert [ey[0, 0] == 2.0 for _, ey in batch] != [True] * m + [False] * m   # mixed
    else:             # empty buffer: stand-ins for the replayed steps (skipped)
      assert len(current) == 2 * m


def test_one_mer_step_moves_as_far_as_one_cl_step_to_first_order():
  """tto_lr is the rate of a whole MER step: with a small rate, one step (2 batches of
  4 examples, beta 0.3) displaces the params like one SGD step of CL at that rate."""
  sgd = dict(tto_opt='sgd', tto_lr=1e-4)
  learner = build('mer', replay_ratio=0.0, steps_per_batch=4, batches_per_step=2,
                  beta=0.3, gamma=1.0, **sgd)
  cl = build_plain('cl', MODALITY, sgd)
  state0 = start(learner)
  moved = distance(jax.jit(learner.adapt)(state0, FIRST_TASK, jnp.int32(1))['params'],
                   state0['params'])
  moved_cl = distance(jax.jit(cl.adapt)(start(cl), FIRST_TASK, jnp.int32(1))['params'],
                      state0['params'])
  assert moved == pytest.approx(moved_cl, rel=0.05), (moved, moved_cl)


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


def two_task_signal():
  two = ImageTasks(shape=(8, 8), channels=3, grid=(1, 2))
  episode = jax.tree.map(jnp.asarray, two.episode(helpers.smooth_images(1, seed=3)[0]))
  return task_spec(two), episode


def test_ewc_uses_the_models_fisher_which_does_not_vanish_at_a_fitted_task():
  """Kirkpatrick et al.'s Fisher E[J^T J]: at params that fit task 1, the empirical
  Fisher mean (J^T r)^2 is ~0 (r ~ 0) but EWC's is not, so its penalty holds."""
  learner = build('ewc', tto_opt='adam', tto_lr=1e-2)
  state = jax.jit(learner.adapt)(start(learner), FIRST_TASK, jnp.int32(200))
  x, y = FIRST_TASK.context_x[0], FIRST_TASK.context_y[0]
  assert task_mse(learner, state, x, y) < 1e-3
  setup = learners.build_setup(tiny_config(), 'ewc', MODALITY)
  total = lambda tree: sum(float(jnp.sum(v)) for v in jax.tree.leaves(tree))
  kept = total(state['fisher'])
  np.testing.assert_allclose(kept, total(fisher.model_diag_fisher(setup.apply, state['params'],
                                                                   x)), rtol=1e-4)
  assert kept > 100 * total(fisher.diag_fisher(setup.apply, state['params'], x, y)) > 0


def test_ewc_forgets_less_than_cl_on_two_tasks():
  spec, episode = two_task_signal()
  x1, y1 = episode.context_x[0], episode.context_y[0]
  fast = dict(tto_opt='adam', tto_lr=1e-2)
  steps = jnp.int32(60)
  cl = build_plain('cl', spec, fast)
  ewc_learner = build_plain('ewc', spec, dict(fast, ewc_lambda=1.0))
  forgot = task_mse(cl, jax.jit(cl.adapt)(start(cl), episode, steps), x1, y1)
  kept = task_mse(ewc_learner, jax.jit(ewc_learner.adapt)(start(ewc_learner), episode, steps),
                  x1, y1)
  assert kept < forgot / 2, (kept, forgot)


def test_ewc_sums_one_penalty_per_finished_task():
  """(A, m) of add_task have the gradient of sum_j F_j (theta - theta*_j)^2."""
  keys = jax.random.split(jax.random.key(0), 5)
  shape = {'w': (3, 2)}
  f1, f2 = ({'w': jnp.abs(jax.random.normal(k, (3, 2)))} for k in keys[:2])
  a1, a2, theta = ({'w': jax.random.normal(k, (3, 2))} for k in keys[2:])
  zeros = jax.tree.map(jnp.zeros, shape, is_leaf=lambda s: isinstance(s, tuple))
  f, m = ewc.add_task(zeros, a1, f1, a1)
  f, m = ewc.add_task(f, m, f2, a2)
  both = lambda p: ewc.penalty(p, f1, a1, 2.0) + ewc.penalty(p, f2, a2, 2.0)
  close(jax.grad(lambda p: ewc.penalty(p, f, m, 2.0))(theta), jax.grad(both)(theta))


# ER's buffer: a fraction of the signal, the same at every scale.

@pytest.mark.parametrize('size', [8, 16])
def test_er_buffer_holds_its_fraction_of_the_signal(size):
  tasks = ImageTasks(shape=(size, size), channels=3, grid=(1, 4))
  episode = jax.tree.map(jnp.asarray, tasks.episode(helpers.smooth_images(1, size=size)[0]))
  learner = build_plain('er', task_spec(tasks), dict(buffer_fraction=0.25))
  state = jax.jit(learner.adapt)(start(learner), episode, jnp.int32(1))
  assert state['buffer']['x'].shape[0] == size * size // 4
  helpers.one_line_error('buffer_fraction=0.0 must be in', build, 'er', buffer_fraction=0.0)


# OML: an online inner trajectory and a remember set in the meta-loss.

@pytest.mark.slow
def test_oml_steps_fit_small_batches_online_or_the_whole_task():
  x, y = FIRST_TASK.context_x[0], FIRST_TASK.context_y[0]
  for online_batch in (4, 0):
    c = tiny_config(oml=dict(rln_layers=2, online_batch=online_batch, tto_opt='sgd',
                             tto_lr=0.1))
    learner = learners.build(c, 'oml', MODALITY)
    setup = learners.build_setup(c, 'oml', MODALITY)
    state0 = start(learner)
    got = jax.jit(learner.adapt)(state0, FIRST_TASK, jnp.int32(2))['pln']
    sx, sy = oml.stream(x, y, 0) if online_batch else (x, y)
    pln = state0['pln']
    for k in range(2):
      rows = slice(k * online_batch, (k + 1) * online_batch) if online_batch else slice(None)
      grad = jax.grad(lambda p: setup.loss(
          lambda q, xs: setup.apply({**state0['rln'], **q}, xs), p, sx[rows], sy[rows]))(pln)
      pln = jax.tree.map(lambda p, g: p - 0.1 * g, pln, grad)
    close(got, pln)
  assert sorted(np.asarray(oml.stream(x, y, 0)[0]).tolist()) == sorted(np.asarray(x).tolist())


def test_oml_meta_loss_joins_the_trajectory_and_the_remember_set():
  """With online batches the meta-loss is the size-weighted loss on S_traj (the rows the
  inner loop fitted) and S_rand (the whole signal); full batch: the whole signal."""
  for online_batch in (4, 0):
    c = tiny_config(oml=dict(rln_layers=2, online_batch=online_batch))
    learner = learners.build(c, 'oml', MODALITY)
    setup = learners.build_setup(c, 'oml', MODALITY)
    meta = learner.init(jax.random.key(0))
    loss, _ = jax.jit(learner.meta_loss)(meta, EPISODE)
    state = learner.adapt(learner.start(meta), EPISODE, c.meta.inner_steps)
    params = {**state['rln'], **state['pln']}
    task_loss = lambda xs, ys: float(setup.loss(setup.apply, params, xs, ys))
    rand = np.mean([task_loss(EPISODE.context_x[t], EPISODE.context_y[t]) for t in range(4)])
    if not online_batch:
      assert float(loss) == pytest.approx(rand, rel=1e-5)
      continue
    fitted = c.meta.inner_steps * online_batch
    traj = np.mean([task_loss(*(a[:fitted] for a in oml.stream(
        EPISODE.context_x[t], EPISODE.context_y[t], t))) for t in range(4)])
    m = EPISODE.context_x.shape[1]
    assert float(loss) == pytest.approx((fitted * traj + m * rand) / (fitted + m), rel=1e-5)
