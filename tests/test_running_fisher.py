"""The running per-task Fisher of Algorithm 1 (l. 8, 16): decay 0 is the per-batch FIM
loss, the estimate follows F_t = d F_(t-1) + (1 - d) F_batch, chained test-time calls
equal one long run, and the second-order meta-gradient matches finite differences."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import fisher, learners, losses, meta
from mclnf_jax.fields import Field
from mclnf_jax.fields.siren import Siren
from mclnf_jax.learners import modular_fim
from tests import helpers

FIELD = Field(Siren(width=5, depth=3, out_dim=2, w0=3.0), in_dim=2)
PARAMS = FIELD.init(jax.random.key(0))
XS = jax.random.uniform(jax.random.key(1), (3, 12, 2), minval=-1, maxval=1)
YS = jax.random.uniform(jax.random.key(2), (3, 12, 2))
PATHS = [('diag', 'taps'), ('kfac', 'taps'), ('diag', 'vmap'), ('exact', 'vmap')]


def plain_apply(params, x):
  """FIELD behind a lambda: the vmap(grad) reference path, no dense taps."""
  return FIELD.apply(params, x)


def apply_of(path):
  return FIELD.apply if path == 'taps' else plain_apply


def leaves_close(a, b, **tol):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), **tol)


@pytest.mark.parametrize('kind,path', PATHS)
def test_decay_zero_is_the_per_batch_loss(kind, path):
  """At a task's first batch and, with decay 0, at every later one: loss, weights and
  gradient as without a running Fisher."""
  apply_fn = apply_of(path)

  def value_and_grad(x, y, **running):
    def loss(p):
      out = losses.fim_weighted_mse(apply_fn, p, x, y, lam=2.0, fisher=kind,
                                    return_weights=True, **running)
      return out[0], out[1:]
    return jax.value_and_grad(loss, has_aux=True)(PARAMS)
  per_batch = jax.jit(lambda x, y: value_and_grad(x, y))
  carried = jax.jit(lambda x, y, f, d: value_and_grad(x, y, running=f, decay=d))
  empty = fisher.init_running(apply_fn, PARAMS, kind)
  seen = carried(XS[0], YS[0], empty, 0.9)[0][1][1]    # another batch's Fisher, count 1
  (want, (want_w,)), want_g = per_batch(XS[1], YS[1])
  for running, decay in ((empty, 0.9), (seen, 0.0)):
    (got, (got_w, _)), got_g = carried(XS[1], YS[1], running, decay)
    tol = 1e-4 if kind == 'exact' else 1e-6    # exact: a float32 solve of a P x P matrix
    np.testing.assert_allclose(got, want, rtol=tol)
    np.testing.assert_allclose(got_w, want_w, rtol=tol)
    leaves_close(got_g, want_g, rtol=10 * tol, atol=1e-6)
  (_, (moved, _)), _ = carried(XS[1], YS[1], seen, 0.9)
  assert float(jnp.abs(moved - want_w).max()) > 1e-3      # a decay that does something


@pytest.mark.parametrize('kind', ['diag', 'kfac'])
def test_running_fisher_is_finite_across_target_scales(kind):
  """The estimate is kept unscaled (float32 up to (1e12)^2) and rescaled per batch, so
  batches of targets 1, 1e12, 1 in turn give finite weights of mean one."""
  step = jax.jit(lambda y, f: losses.fim_weighted_mse(
      FIELD.apply, PARAMS, XS[0], y, lam=1e3, fisher=kind, return_weights=True,
      running=f, decay=0.9)[1:])
  running = fisher.init_running(FIELD.apply, PARAMS, kind)
  for scale in (1.0, 1e12, 1.0):
    w, running = step(YS[0] * scale, running)
    assert bool(jnp.isfinite(w).all()) and float(w.min()) > 0
    np.testing.assert_allclose(float(jnp.mean(w)), 1.0, rtol=1e-5)
  assert all(bool(jnp.isfinite(f).all()) for f in jax.tree.leaves(running.factors))


def brute_factors(kind, params, x, y):
  """A batch's Fisher in float64 from per-sample gradients (taps only for K-FAC's A, G)."""
  if kind == 'kfac':
    _, taps = fisher.dense_taps(FIELD.apply, params, x, y)
    out = []
    for a, d in zip(taps.inputs, taps.scores):
      a1 = np.concatenate([np.asarray(a), np.ones((a.shape[0], 1))], 1)
      d = np.asarray(d) * float(taps.scale)
      out.append((a1.T @ a1 / len(a1), d.T @ d / len(d)))
    return out
  g = np.asarray(fisher.per_sample_scores(plain_apply, params, x, y))
  return [((g * g).mean(0) if kind == 'diag' else g.T @ g / len(g),)]


@pytest.mark.parametrize('kind,path', [('kfac', 'taps'), ('diag', 'vmap'), ('exact', 'vmap')])
def test_running_factors_follow_the_recursion(kind, path):
  """Three batches folded in by hand (float64): F_1 = F_b1, F_t = d F_(t-1) + (1-d) F_bt;
  the weights then use F_t (checked for the materialised estimators)."""
  decay, damping = 0.7, 1e-3
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    apply_fn = apply_of(path)
    step = jax.jit(lambda x, y, running: losses.fim_weighted_mse(
        apply_fn, params, x, y, lam=1.0, fisher=kind, damping=damping, normalize=False,
        max_ratio=None,
        return_weights=True, running=running, decay=decay))
    running, want = fisher.init_running(apply_fn, params, kind), None
    for x, y in zip(XS.astype(jnp.float64), YS.astype(jnp.float64)):
      _, w, running = step(x, y, running)
      batch = brute_factors(kind, params, x, y)
      want = batch if want is None else jax.tree.map(
          lambda f, b: decay * f + (1 - decay) * b, want, batch)
      if kind != 'kfac':
        g = np.asarray(fisher.per_sample_scores(plain_apply, params, x, y))
        f = want[0][0] + damping * (1 if kind == 'diag' else np.eye(g.shape[1]))
        q = (g * g / f).sum(1) if kind == 'diag' else np.einsum(
            'ip,ip->i', g, np.linalg.solve(f, g.T).T)
        np.testing.assert_allclose(np.asarray(w), 1 + q, rtol=1e-9)
    assert int(running.count) == 3
    leaves_close(running.factors, want, rtol=1e-10, atol=1e-14)


def tiny_learner(decay, running=None, **method):
  config = helpers.tiny_config('modular_fim')
  config.methods.modular_fim.update(fisher_decay=decay, **method)
  spec = helpers.tiny_spec()
  if running is None:
    return learners.build(config, 'modular_fim', spec), config
  setup = learners.build_setup(config, 'modular_fim', spec)
  return modular_fim.running_modular('modular_fim', setup, running), config


@pytest.mark.slow
def test_decay_zero_learner_equals_the_per_batch_learner():
  """The running-Fisher learner at decay 0: test-time state, meta-loss and meta-gradient
  of the per-batch learner."""
  per_batch, _ = tiny_learner(0.0)
  carried, _ = tiny_learner(0.0, running=0.0)
  episodes = jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))
  meta_params = per_batch.init(jax.random.key(0))
  for learner in (per_batch, carried):
    adapt = jax.jit(jax.vmap(learner.adapt, in_axes=(None, 0, None)))
    state = adapt(learner.start(meta_params), episodes, jnp.int32(5))
    value, grads = jax.jit(jax.value_and_grad(
        lambda p: meta.batch_loss(learner, p, episodes)[0]))(meta_params)
    if learner is per_batch:
      want = (state['params'], value, grads)
  assert 'fisher' in state and 'fisher' not in per_batch.start(meta_params)
  leaves_close((state['params'], value, grads), want, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_running_learner_fisher_and_params_follow_a_hand_computed_loop():
  """One expert, 3 test-time SGD steps of the diag FIM loss with a running Fisher,
  recomputed by hand from per-sample gradients in float64."""
  decay, steps, lr = 0.5, 3, 0.1
  with jax.enable_x64(True):
    learner, config = tiny_learner(decay, tto_opt='sgd', tto_lr=lr)
    episode = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), helpers.tiny_episodes(1))
    episode = jax.tree.map(lambda a: a[0], episode)
    shared = jax.tree.map(lambda p: p.astype(jnp.float64), learner.init(jax.random.key(0)))
    state = learner.adapt(learner.start(shared), episode, steps)
    setup = learners.build_setup(config, 'modular_fim', helpers.tiny_spec())
    apply_fn = lambda p, x: setup.field.apply(p, x)      # no taps: the reference scores
    fim, task = config.fim, 2
    x, y, p, f = episode.context_x[task], episode.context_y[task], shared, None
    for _ in range(steps):
      batch = fisher.diag_fisher(apply_fn, p, x, y)
      f = batch if f is None else jax.tree.map(lambda a, b: decay * a + (1 - decay) * b,
                                               f, batch)
      g = np.asarray(fisher.per_sample_scores(apply_fn, p, x, y))
      q = (g * g / (jax.flatten_util.ravel_pytree(f)[0] + fim.damping)).sum(1)
      ratio = jnp.minimum(q / q.mean(), fim.max_ratio)     # bounded, mean-one weights
      w = (1 + fim.lam * ratio) / jnp.mean(1 + fim.lam * ratio)
      grads = jax.grad(lambda p: jnp.mean(w[:, None] * (apply_fn(p, x) - y) ** 2))(p)
      p = jax.tree.map(lambda a, b: a - lr * b, p, grads)
    names = setup.field.module.dense_names
    got = [(k[task], b[task]) for k, b in state['fisher'].factors]
    leaves_close(got, [(f[n]['kernel'], f[n]['bias']) for n in names], rtol=1e-8)
    leaves_close(jax.tree.map(lambda a: a[task], state['params']), p, rtol=1e-8, atol=1e-12)
    assert int(state['fisher'].count[task]) == steps


def test_chained_adapt_equals_one_long_run():
  """Evaluation chains k then k' test-time steps (fori_loop); the Fisher continues."""
  learner, _ = tiny_learner(0.9)
  episodes = jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))
  adapt = jax.jit(jax.vmap(learner.adapt, in_axes=(0, 0, None)))
  start = jax.tree.map(lambda a: jnp.stack([a, a]), learner.start(learner.init(
      jax.random.key(0))))
  chained = adapt(adapt(start, episodes, jnp.int32(2)), episodes, jnp.int32(3))
  once = adapt(start, episodes, jnp.int32(5))
  assert int(chained['fisher'].count.min()) == 5 and int(chained['draws'][0]) == 5
  leaves_close(chained, once, rtol=1e-6, atol=1e-9)
  per_batch = jax.jit(jax.vmap(tiny_learner(0.0)[0].adapt, in_axes=(0, 0, None)))(
      {k: v for k, v in start.items() if k != 'fisher'}, episodes, jnp.int32(5))
  assert float(jnp.abs(per_batch['params']['dense_0']['kernel']
                       - once['params']['dense_0']['kernel']).max()) > 1e-6


@pytest.mark.slow
def test_second_order_meta_gradient_matches_finite_differences():
  """The FIM loss's gradient holds its weights constant; the meta-gradient differentiates
  each inner step exactly, weights and running Fisher included. So the reference is a
  replica whose inner steps recompute everything at the perturbed params and whose query
  loss keeps the unperturbed run's weights: its value equals the meta-loss there, and
  its central differences the meta-gradient."""
  with jax.enable_x64(True):
    learner, config = tiny_learner(0.5, inner_lr=0.1)
    episodes = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), helpers.tiny_episodes(2))
    params = jax.tree.map(lambda p: p.astype(jnp.float64), learner.init(jax.random.key(0)))
    loss = lambda p: meta.batch_loss(learner, p, episodes)[0]
    value, grads = jax.value_and_grad(loss)(params)
    apply_fn = learners.build_setup(config, 'modular_fim', helpers.tiny_spec()).apply
    fim, inner = config.fim, config.meta.inner_steps

    def replica(theta, frozen=None):
      """meta.batch_loss of the running-Fisher learner, Python loops; weights recorded or
      taken from `frozen`."""
      record, total = [], 0.0
      for xs, ys in zip(episodes.context_x, episodes.context_y):
        per_task = []
        for x, y in zip(xs, ys):
          p, f = theta, fisher.init_running(apply_fn, theta, fim.fisher)
          for k in range(inner + 1):       # inner steps, then the query loss
            if frozen is None or k < inner:
              _, w, f = losses.by_name('fim', fim)(apply_fn, p, x, y, return_weights=True,
                                                   running=f, decay=0.5)
            else:
              w = frozen[len(record)]
            record.append(w)
            weighted = lambda p: jnp.mean(w[:, None] * (apply_fn(p, x) - y) ** 2)
            if k < inner:
              p = jax.tree.map(lambda a, g: a - 0.1 * g, p, jax.grad(weighted)(p))
            else:
              per_task.append(weighted(p))
        total = total + jnp.mean(jnp.stack(per_task))
      return total / len(episodes.context_x), record

    start, frozen = replica(params)
    np.testing.assert_allclose(float(start), float(value), rtol=1e-12)
    assert float(jnp.abs(frozen[1] - frozen[0]).max()) > 1e-6   # weights move with steps
    frozen_loss = jax.jit(lambda p: replica(p, frozen)[0])
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grads)[0]
    assert bool(jnp.isfinite(g).all())
    rng = np.random.default_rng(0)
    for _ in range(3):
      v = jnp.asarray(rng.normal(size=flat.shape))
      v, h = v / jnp.linalg.norm(v), 1e-5
      fd = (frozen_loss(unravel(flat + h * v)) - frozen_loss(unravel(flat - h * v))) / (2 * h)
      np.testing.assert_allclose(float(g @ v), float(fd), rtol=1e-6, atol=1e-10)


def test_bad_decay_is_one_line():
  spec = helpers.tiny_spec()
  for decay, match in ((1.0, 'outside'), (-0.1, 'outside')):
    config = helpers.tiny_config('modular_fim')
    config.methods.modular_fim.fisher_decay = decay
    helpers.one_line_error(match, learners.build, config, 'modular_fim', spec)
  config = helpers.tiny_config('modular_fim')
  config.methods.modular_fim.update(fisher_decay=0.5, loss='mse')
  helpers.one_line_error('needs the FIM loss', learners.build, config, 'modular_fim', spec)
