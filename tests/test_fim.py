"""The FIM loss against brute force on tiny models, and its edge cases."""
import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import fisher, losses
from mclnf_jax.errors import UserError
from mclnf_jax.fields import Field
from mclnf_jax.fields.siren import Siren

FIELD = Field(Siren(width=5, depth=3, out_dim=2, w0=3.0), in_dim=2)
PARAMS = FIELD.init(jax.random.key(0))
X = jax.random.uniform(jax.random.key(1), (12, 2), minval=-1, maxval=1)
Y = jax.random.uniform(jax.random.key(2), (12, 2))


def plain_apply(params, x):
  """The same function as FIELD, hidden behind a lambda: no dense taps."""
  return FIELD.apply(params, x)


def brute_force_q(apply_fn, params, x, y, kind, damping):
  """q_i = g_i^T F^-1 g_i with F formed in full and inverted exactly (float64)."""
  g = np.asarray(fisher.per_sample_scores(apply_fn, params, x, y), np.float64)
  n = g.shape[0]
  if kind == 'exact':
    f = g.T @ g / n + damping * np.eye(g.shape[1])
  elif kind == 'diag':
    f = np.diag((g * g).mean(0) + damping)
  else:   # kfac: block-diagonal Kronecker factors, in the flattened leaf order
    _, taps = fisher.dense_taps(FIELD, params, x, y)
    blocks = {}
    for name, a, d in zip(FIELD.module.dense_names, taps.inputs, taps.scores):
      a1 = np.concatenate([np.asarray(a, np.float64), np.ones((n, 1))], 1)
      d = np.asarray(d, np.float64) * float(taps.scale)   # taps hold d / max|r|
      big_a = a1.T @ a1 / n + np.sqrt(damping) * np.eye(a1.shape[1])
      big_g = d.T @ d / n + np.sqrt(damping) * np.eye(d.shape[1])
      full = np.kron(big_a, big_g)     # index (j*out + k) for kernel[j, k], bias last row
      nk = (a1.shape[1] - 1) * d.shape[1]
      # leaves are ordered bias then kernel within a layer
      order = np.r_[np.arange(nk, nk + d.shape[1]), np.arange(nk)]
      blocks[name] = full[np.ix_(order, order)]
    f = np.zeros((g.shape[1], g.shape[1]))
    i = 0
    for name in sorted(blocks):
      b = blocks[name]
      f[i:i + len(b), i:i + len(b)] = b
      i += len(b)
  return np.einsum('ip,ip->i', g, np.linalg.solve(f, g.T).T)


@pytest.mark.parametrize('kind,apply_fn', [('exact', plain_apply), ('diag', plain_apply),
                                           ('diag', FIELD.apply), ('kfac', FIELD.apply)])
@pytest.mark.slow
def test_weights_match_brute_force(kind, apply_fn):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    x, y = X.astype(jnp.float64), Y.astype(jnp.float64)
    damping = 1e-3
    q = brute_force_q(plain_apply, params, x, y, kind, damping)
    bound = (1 + np.max(q / q.mean())) / 2          # a bound that binds on some samples
    ratio = np.minimum(q / q.mean(), bound)
    cases = {(False, None): 1 + 0.5 * q, (True, None): (1 + 0.5 * q / q.mean()) / 1.5,
             (False, bound): 1 + 0.5 * ratio * q.mean(),
             (True, bound): (1 + 0.5 * ratio) / np.mean(1 + 0.5 * ratio)}
    for (normalize, max_ratio), expected in cases.items():
      _, w = losses.fim_weighted_mse(apply_fn, params, x, y, lam=0.5, fisher=kind,
                                     damping=damping, normalize=normalize,
                                     max_ratio=max_ratio, return_weights=True)
      np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['diag', 'kfac'])
def test_fast_path_value_and_gradient_match_reference(kind):
  loss = functools.partial(losses.fim_weighted_mse, lam=2.0, fisher=kind, normalize=True)
  fast_v, fast_g = jax.value_and_grad(lambda p: loss(FIELD.apply, p, X, Y))(PARAMS)
  # Reference gradient: autodiff of mean(stop_gradient(w) * r^2).
  w = loss(FIELD.apply, PARAMS, X, Y, return_weights=True)[1]
  ref = lambda p: jnp.mean(w * jnp.mean((plain_apply(p, X) - Y) ** 2, -1))
  ref_v, ref_g = jax.value_and_grad(ref)(PARAMS)
  np.testing.assert_allclose(fast_v, ref_v, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(fast_g), jax.tree.leaves(ref_g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('kind,tapped,max_ratio', [
    ('diag', True, None), ('kfac', True, None), ('diag', False, None), ('exact', False, None),
    ('diag', True, 1.5), ('exact', False, 1.05)])
def test_meta_gradient_through_fim_steps_is_exact(kind, tapped, max_ratio):
  """MAML through FIM-loss inner steps: the meta-gradient is the derivative of the inner
  loop that runs (weights and Fisher recomputed at every step), checked by central
  differences in float64 along random directions. With the weights stopped in the
  meta-gradient as well (the code before session 9) every case here fails."""
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    x, y = X.astype(jnp.float64), Y.astype(jnp.float64)
    apply_fn = FIELD.apply if tapped else plain_apply
    loss = functools.partial(losses.fim_weighted_mse, apply_fn, lam=2.0, fisher=kind,
                             damping=1e-3, max_ratio=max_ratio)
    if max_ratio:                          # the bound binds on some sample at the start
      w = loss(params, x, y, max_ratio=None, return_weights=True)[1]
      assert float(w.max()) * 3.0 > 1.0 + 2.0 * max_ratio     # w = (1 + 2 q / mean q) / 3

    def meta_loss(p):
      for _ in range(2):
        p = jax.tree.map(lambda a, g: a - 0.3 * g, p, jax.grad(lambda q: loss(q, x, y))(p))
      return losses.mse(apply_fn, p, x, y)
    value_and_grad = jax.jit(jax.value_and_grad(meta_loss))
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(value_and_grad(params)[1])[0]
    f = jax.jit(lambda v: meta_loss(unravel(v)))
    h = 1e-6
    for seed in range(3):
      v = jax.random.normal(jax.random.key(seed), flat.shape, jnp.float64)
      v = v / jnp.linalg.norm(v)
      fd = (f(flat + h * v) - f(flat - h * v)) / (2 * h)
      np.testing.assert_allclose(float(g @ v), float(fd), rtol=1e-6, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['exact', 'diag', 'kfac'])
def test_lam_zero_is_mse(kind):
  apply_fn = FIELD.apply if kind == 'kfac' else plain_apply
  value = losses.fim_weighted_mse(apply_fn, PARAMS, X, Y, lam=0.0, fisher=kind)
  assert float(value) == float(losses.mse(apply_fn, PARAMS, X, Y))


@pytest.mark.parametrize('kind', ['exact', 'diag', 'kfac'])
@pytest.mark.parametrize('lam', [1.0, 1e3])
def test_weights_finite_and_bounded_below(kind, lam):
  apply_fn = FIELD.apply if kind == 'kfac' else plain_apply
  cases = {'plain': (X, Y), 'large targets': (X, Y * 1e6),
           'large inputs': (X * 1e4, Y),
           # targets equal to predictions: every score is zero
           'zero gradient': (X, FIELD.apply(PARAMS, X))}
  for name, (x, y) in cases.items():
    for normalize in (False, True):
      _, w = losses.fim_weighted_mse(apply_fn, PARAMS, x, y, lam=lam, fisher=kind,
                                     normalize=normalize, return_weights=True)
      floor = 1 / (1 + lam) if normalize else 1.0
      assert np.isfinite(w).all() and (w >= floor * (1 - 1e-6)).all(), (name, normalize)
      if normalize:        # bounded (max_ratio=2): no sample weighs 1 + 2 lam times another
        assert w.max() <= (1 + 2 * lam) * w.min() * (1 + 1e-5), name
        np.testing.assert_allclose(np.mean(w), 1.0, rtol=1e-5)   # the MSE's mean step


@pytest.mark.slow
def test_works_under_jit_vmap_and_grad():
  stacked = jax.vmap(FIELD.init)(jax.random.split(jax.random.key(3), 3))
  xs, ys = jnp.stack([X] * 3), jnp.stack([Y] * 3)
  for kind in ('diag', 'kfac'):
    loss = lambda p, x, y: losses.fim_weighted_mse(FIELD.apply, p, x, y, lam=1.0, fisher=kind)
    per_expert = jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked, xs, ys)
    for e in range(3):
      one = jax.value_and_grad(loss)(jax.tree.map(lambda p: p[e], stacked), X, Y)
      np.testing.assert_allclose(per_expert[0][e], one[0], rtol=1e-4)


@pytest.mark.slow
def test_second_order_through_fast_path_matches_reference():
  """MAML differentiates through the custom VJP: grad of a one-step inner update."""
  def meta(apply_fn, p):
    g = jax.grad(lambda q: losses.fim_weighted_mse(apply_fn, q, X, Y, lam=1.0))(p)
    p1 = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    return losses.mse(apply_fn, p1, X, Y)
  fast = jax.grad(functools.partial(meta, FIELD.apply))(PARAMS)
  ref = jax.grad(functools.partial(meta, plain_apply))(PARAMS)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_bad_estimator_names():
  with pytest.raises(UserError, match='unknown fisher'):
    losses.fim_weighted_mse(plain_apply, PARAMS, X, Y, lam=1.0, fisher='full')
  with pytest.raises(UserError, match='kfac needs a field'):
    losses.fim_weighted_mse(plain_apply, PARAMS, X, Y, lam=1.0, fisher='kfac')


def test_diag_fisher_fast_matches_per_sample():
  fast = fisher.diag_fisher(FIELD.apply, PARAMS, X, Y)
  ref = fisher.diag_fisher(plain_apply, PARAMS, X, Y)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize('apply_fn', [FIELD.apply, plain_apply], ids=['taps', 'vmap'])
def test_model_fisher_is_j_transpose_j_and_does_not_vanish_at_a_fitted_task(apply_fn):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    x = X.astype(jnp.float64)
    jac = jax.vmap(jax.jacrev(lambda p, xi: FIELD.apply(p, xi[None])[0]),
                   in_axes=(None, 0))(params, x)
    brute = jax.tree.map(lambda j: jnp.mean(jnp.sum(j * j, axis=1), axis=0), jac)
    model = fisher.model_diag_fisher(apply_fn, params, x)
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(brute)):
      np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    fitted = FIELD.apply(params, x)              # a task fitted exactly: r = 0
    empirical = fisher.diag_fisher(apply_fn, params, x, fitted)
    assert max(float(jnp.abs(e).max()) for e in jax.tree.leaves(empirical)) < 1e-20
    assert min(float(jnp.abs(m).sum()) for m in jax.tree.leaves(model)) > 0


def test_a_bound_below_one_is_a_one_line_error():
  """max_ratio < 1 would clip every sample below the mean: refused, in the library and
  in a config (where 0 means unbounded)."""
  from mclnf_jax.configs import base, checks
  from tests import helpers
  helpers.one_line_error('max_ratio=0.5 must be >= 1', losses.fim_weighted_mse,
                         plain_apply, PARAMS, X, Y, lam=1.0, max_ratio=0.5)
  config = base.base_config()
  config.fim.max_ratio = 0.5
  helpers.one_line_error('config.fim.max_ratio=0.5 must be >= 1', checks.check, config)
  config.fim.max_ratio = 0.0
  checks.check(config)
