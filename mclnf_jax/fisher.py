"""Per-sample scores and Fisher information, the pieces of the FIM loss and of EWC.

For a Gaussian likelihood p(y | f(x)) = N(y; f(x), I) the score of sample i is
g_i = grad_theta log p(y_i | f(x_i)) = -J_i^T r_i with residual r_i = f(x_i) - y_i.

Two ways to get at g_i:
* `per_sample_scores`: `vmap(grad)` over samples, for any apply_fn (the reference).
* `dense_taps`: for fields made of dense layers (SIREN), one forward pass records each
  layer's input a_i and one backward pass its pre-activation score d_i; the score of
  the layer's (kernel, bias) is then the outer product [a_i, 1] d_i^T, so Fisher
  diagonals, Kronecker factors and quadratic forms g^T F^-1 g are a few matmuls per
  layer and no per-sample gradient is ever stored.
* `grouped_taps`: for predictions formed from such a field whose row i reads only its
  own rows of each field call (a `types.GroupedPrediction`: volume rendering, ray i of
  its samples), the same two passes through the prediction; row i's score of a layer is
  G_i = sum over its field rows s of [a_s, 1] d_s^T, formed per row (the size of a
  per-sample gradient, layer by layer) for the diagonal Fisher only.
Scores are divided by a constant before squaring (materialised ones by their largest
magnitude, tapped ones by the largest residual, since they are linear in it), and the
damping by its square, so q is unchanged and float32 targets of 1e6 neither overflow
nor underflow.

A task's Fisher may also be a running estimate (Algorithm 1 initialises F_i per task,
l. 8, and updates it after every inner step, l. 16): `RunningFisher` carries it between
steps, F_t = decay F_{t-1} + (1 - decay) F_batch with F_1 the first batch's own, and
the quadratic forms take it in place of the batch's (`running=`).
"""
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError
from mclnf_jax.types import GroupedPrediction

ESTIMATORS = ('exact', 'diag', 'kfac')


def _log_likelihood(apply_fn, params, x, y):
  return -0.5 * jnp.sum(jnp.square(apply_fn(params, x[None])[0] - y))


def per_sample_scores(apply_fn, params, x: jax.Array, y: jax.Array) -> jax.Array:
  """g_i flattened over every leaf: [N, P] (materialises N x P; for small models)."""
  grads = jax.vmap(jax.grad(_log_likelihood, argnums=1), in_axes=(None, None, 0, 0))(
      apply_fn, params, x, y)
  return jnp.concatenate([g.reshape(x.shape[0], -1) for g in jax.tree_util.tree_leaves(grads)],
                         axis=1)


def _unit_scale(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """v / max|v| and max|v| (1 where v is all zero), held constant for differentiation."""
  s = jax.lax.stop_gradient(jnp.max(jnp.abs(v)))
  s = jnp.where(s > 0, s, 1.0)
  return v / s, s


class RunningFisher(NamedTuple):
  """A task's Fisher carried across inner steps (Algorithm 1, l. 8 and 16).

  factors: per layer a tuple of arrays in the units of the unscaled scores (diag: the
  kernel's and bias's mean g^2; kfac: A and G; materialised scores: one tuple holding
  the [P] diagonal or the [P, P] matrix); count: batches folded in so far (0: none, so
  the next batch's estimate is taken as it is)."""
  factors: list
  count: jax.Array


def tap_source(apply_fn: Any) -> tuple[Any, bool]:
  """(the Field whose dense layers can be tapped for apply_fn, whether its prediction
  rows group several field rows), or (None, False): a Field or its `.apply` taps
  directly, a `GroupedPrediction` built over one through its `over`."""
  grouped = isinstance(apply_fn, GroupedPrediction)
  fn = apply_fn.field if grouped else apply_fn
  field = getattr(fn, '__self__', fn)
  if not hasattr(getattr(field, 'module', None), 'dense_names'):
    return None, False
  return field, grouped


def uses_taps(apply_fn: Any, fisher: str) -> bool:
  """Whether the FIM loss of `fisher` takes the tapped path for this apply_fn.

  Grouped predictions tap only 'diag' ('exact' takes the reference path); K-FAC's
  Kronecker factorisation needs one input per score, which a sum over a row's field rows
  is not, so it is refused for them."""
  field, grouped = tap_source(apply_fn)
  if grouped and fisher == 'kfac':
    raise UserError('fisher=kfac needs one field row per prediction, but this prediction '
                    '(e.g. volume rendering) sums several: use fim.fisher=diag or exact')
  return fisher != 'exact' and field is not None


def init_running(apply_fn, params, fisher: str) -> RunningFisher:
  """F_i before task i's first batch (Algorithm 1, l. 8): zeros of the estimator's shape
  and count 0, so the first update takes the first batch's Fisher whole."""
  if fisher not in ESTIMATORS:
    raise UserError(f'unknown fisher={fisher!r}: use one of {", ".join(ESTIMATORS)}')
  zeros = lambda *shape: jnp.zeros(shape, jax.tree_util.tree_leaves(params)[0].dtype)
  if uses_taps(apply_fn, fisher):
    field, _ = tap_source(apply_fn)
    factors = []
    for name in field.module.dense_names:
      d_in, d_out = params[name]['kernel'].shape
      factors.append((zeros(d_in, d_out), zeros(d_out)) if fisher == 'diag'
                     else (zeros(d_in + 1, d_in + 1), zeros(d_out, d_out)))
  else:
    p = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    factors = [(zeros(p),) if fisher == 'diag' else (zeros(p, p),)]
  return RunningFisher(factors, jnp.zeros((), jnp.int32))


def _update_running(running: RunningFisher, batch: list, scale: jax.Array, decay: float,
                    powers: tuple[int, ...]):
  """(this step's factors in the batch's scaled units, the updated RunningFisher).

  F_t = d F_{t-1} + (1 - d) F_batch with d = decay once a batch has been seen, else 0;
  a factor carries scale**power (scores are divided by `scale`). With d = 0 the result
  is the batch's factors bit for bit (0 * finite + 1 * x = x)."""
  d = jnp.where(running.count > 0, jnp.asarray(decay, scale.dtype), 0.0)
  now = [tuple(d * (prev / scale**k) + (1.0 - d) * new
               for prev, new, k in zip(prior, fresh, powers))
         for prior, fresh in zip(running.factors, batch)]
  kept = [tuple(f * scale**k for f, k in zip(layer, powers)) for layer in now]
  return now, RunningFisher(kept, running.count + 1)


def quadratic_forms_reference(scores: jax.Array, fisher: str, damping: float,
                              running: Optional[RunningFisher] = None, decay: float = 0.0):
  """q_i = g_i^T F^-1 g_i from materialised scores [N, P] ('exact' or 'diag').

  With `running`, F is the running estimate updated with this batch; returns
  (q, the updated RunningFisher) then."""
  g, s = _unit_scale(scores)
  damp = damping / s**2               # F/s^2 = mean g g^T / s^2 + damping / s^2
  if fisher == 'diag':
    f = jnp.mean(g * g, axis=0)
  elif fisher == 'exact':
    f = g.T @ g / g.shape[0]
  else:
    raise UserError(f'fisher={fisher!r} needs layer taps; materialised scores support '
                    'exact, diag')
  new = None
  if running is not None:
    [(f,)], new = _update_running(running, [(f,)], s, decay, (2,))
  if fisher == 'diag':
    q = jnp.sum(g * g / (f + damp), axis=1)
  else:
    f = f + damp * jnp.eye(g.shape[1], dtype=g.dtype)
    q = jnp.maximum(jnp.sum(g * jnp.linalg.solve(f, g.T).T, axis=1), 0.0)
  return q if running is None else (q, new)


class Taps(NamedTuple):
  """Per dense layer: inputs a [N, d_in] and pre-activation scores d [N, d_out] (grouped:
  [N, K, d_in] and [N, K, d_out], the K field rows of each prediction row), the scores
  divided by `scale` = max_i |r_i| (a constant), so their squares stay in range."""
  inputs: list[jax.Array]
  scores: list[jax.Array]
  scale: jax.Array


def zero_perturbations(names: list[str], params, inputs) -> dict:
  """The 'perturbations' collection of a dense-layer field called on `inputs` [R, d]
  (shapes and dtype only): zeros [R, d_out] at each layer's `name + '_preact'`."""
  def zeros(name):
    kernel = params[name]['kernel']
    dtype = jnp.result_type(inputs.dtype, kernel.dtype)
    return jnp.zeros(inputs.shape[:-1] + kernel.shape[-1:], dtype)
  return {name + '_preact': zeros(name) for name in names}


def has_dense_taps(apply_fn: Any) -> bool:
  """True for a `Field` (or its bound `apply`) whose module lists its dense layers."""
  field = getattr(apply_fn, '__self__', apply_fn)
  return hasattr(getattr(field, 'module', None), 'dense_names')


def dense_taps(apply_fn, params, x: jax.Array, y: jax.Array):
  """One forward and one backward pass: (outputs [N, q], Taps).

  d_i = d log p_i / d z_i for each layer's pre-activation z: the VJP of sum_i log p_i
  w.r.t. zero perturbations added to z, exact per sample since sample i only moves z_i.
  The scores are linear in the residual, so the VJP starts from r / max|r|: squares of
  float32 scores neither overflow for targets of 1e6 nor cost a pass per layer to scale.
  """
  field = getattr(apply_fn, '__self__', apply_fn)
  module, names = field.module, field.module.dense_names
  zeros = zero_perturbations(names, params, x)

  def forward(perturbations):
    out, state = module.apply({'params': params, 'perturbations': perturbations}, x,
                              mutable=['intermediates'])
    return out, state['intermediates']

  out, vjp, inter = jax.vjp(forward, zeros, has_aux=True)
  residual, scale = _unit_scale(out - y)
  (scores,) = vjp(-residual)                # cotangent of sum_i log p_i w.r.t. outputs
  return out, Taps(inputs=[inter[n + '_input'][0] for n in names],
                   scores=[scores[n + '_preact'] for n in names], scale=scale)


def _field_calls(prediction: GroupedPrediction, module, params, x: jax.Array) -> list:
  """The inputs (shape and dtype) of each call `prediction.over` makes to the field, in
  order: traced abstractly, nothing is computed."""
  calls = []

  def probe(p, inputs):
    calls.append(jax.ShapeDtypeStruct(inputs.shape, inputs.dtype))
    return module.apply({'params': p}, inputs)
  jax.eval_shape(lambda p, x: prediction.over(probe)(p, x), params, x)
  return calls


def _by_row(n: int, per_call: list) -> jax.Array:
  """Arrays [R_c, d] of each field call -> [N, K, d]: row i's K = sum_c R_c / N rows."""
  for v in per_call:
    if v.shape[0] % n:
      raise UserError(f'a grouped prediction of {n} rows called its field on '
                      f'{v.shape[0]} rows, not a multiple: it breaks GroupedPrediction\'s '
                      'promise (rows [i k, (i + 1) k) per prediction row)')
  grouped = [v.reshape(n, -1, v.shape[-1]) for v in per_call]
  return grouped[0] if len(grouped) == 1 else jnp.concatenate(grouped, axis=1)


def grouped_taps(prediction: GroupedPrediction, params, x: jax.Array, y: jax.Array):
  """`dense_taps` through a grouped prediction: (outputs [N, q], Taps of [N, K, d]).

  Every field call of `prediction.over` gets its own zero perturbations and records
  its own layer inputs; one VJP from r / max|r| gives every row's pre-activation score
  d_s = d log p_i / d z_s, exact per row since a field row only moves its own
  prediction row i (the GroupedPrediction's promise). Calls are whole (never chunked),
  as the reference path's vmap over rows is too; each call's rows are grouped by
  prediction row and the calls concatenated along K. A call that does not move the
  prediction (hierarchical sampling's coarse call, which only places the fine samples)
  gets zero scores: exact, though its rows still pass through the per-row products."""
  field, _ = tap_source(prediction)
  module, names = field.module, field.module.dense_names
  zeros = [zero_perturbations(names, params, call)
           for call in _field_calls(prediction, module, params, x)]

  def forward(perturbations):
    pending, recorded = list(perturbations), []

    def tapped(p, inputs):
      out, state = module.apply({'params': p, 'perturbations': pending.pop(0)}, inputs,
                                mutable=['intermediates'])
      recorded.append(state['intermediates'])
      return out
    return prediction.over(tapped)(params, x), recorded

  out, vjp, inter = jax.vjp(forward, zeros, has_aux=True)
  residual, scale = _unit_scale(out - y)
  (scores,) = vjp(-residual)                # cotangent of sum_i log p_i w.r.t. outputs
  n = x.shape[0]
  return out, Taps(inputs=[_by_row(n, [c[k + '_input'][0] for c in inter]) for k in names],
                   scores=[_by_row(n, [c[k + '_preact'] for c in scores]) for k in names],
                   scale=scale)


def grouped_scores(a: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each prediction row's score of a dense layer from taps [N, K, d]: kernel
  sum_s a_s d_s^T [N, d_in, d_out] and bias sum_s d_s [N, d_out]."""
  return _row_products(a, d), jnp.sum(d, axis=1)


@jax.custom_vjp
def _row_products(a: jax.Array, d: jax.Array) -> jax.Array:
  """sum_k a[n, k, :]^T d[n, k, :] for each n: [N, K, i], [N, K, o] -> [N, i, o].

  The N small products run much faster on XLA:CPU when both operands contract over
  their minor axis, so every product here (the forward and both of its transposes,
  which MAML's meta-gradient takes through FIM-weighted inner steps) is written that way;
  left to autodiff, the transposes contract over a major axis and the NeRF MIM
  meta-step takes ~2.0x Ours (mod)'s instead of ~1.7x (BUILD_NOTES, "Ours (MIM) on
  NeRF"). The barriers keep XLA from folding the copies back into the dots."""
  return _minor_product(jnp.swapaxes(a, 1, 2), jnp.swapaxes(d, 1, 2))


def _minor_product(x: jax.Array, y: jax.Array) -> jax.Array:
  """x [N, p, k], y [N, q, k] -> [N, p, q], contracting the minor axis of both."""
  x, y = jax.lax.optimization_barrier((x, y))
  return jnp.einsum('npk,nqk->npq', x, y)


def _row_products_fwd(a, d):
  return _row_products(a, d), (a, d)


def _row_products_bwd(residuals, g):
  a, d = residuals                    # g [N, i, o]: da = d g^T, dd = a g per row
  return _minor_product(d, g), _minor_product(a, jnp.swapaxes(g, 1, 2))


_row_products.defvjp(_row_products_fwd, _row_products_bwd)


def quadratic_forms_grouped(taps: Taps, fisher: str, damping: float,
                            running: Optional[RunningFisher] = None, decay: float = 0.0):
  """q_i = sum over layers of G_i^T F^-1 G_i for grouped taps ('diag' only).

  G_i (kernel and bias) is formed per row, F = mean_i G_i^2 + damping, in the taps'
  scaled units (damping / scale^2), as `quadratic_forms_taps`. With `running`, F is the
  running estimate updated with this batch; returns (q, the updated RunningFisher) then.
  """
  if fisher != 'diag':
    raise UserError(f'fisher={fisher!r} is not a grouped tap estimator: use diag')
  scores = [grouped_scores(a, d) for a, d in zip(taps.inputs, taps.scores)]
  squares = [(gk * gk, gb * gb) for gk, gb in scores]
  factors = [(jnp.mean(k2, axis=0), jnp.mean(b2, axis=0)) for k2, b2 in squares]
  new = None
  if running is not None:
    factors, new = _update_running(running, factors, taps.scale, decay, (2, 2))
  damp = damping / taps.scale**2
  total = 0.0
  for (k2, b2), (f_kernel, f_bias) in zip(squares, factors):
    total = total + jnp.sum(k2 / (f_kernel + damp), axis=(1, 2)) \
        + jnp.sum(b2 / (f_bias + damp), axis=1)
  return total if running is None else (total, new)


def diag_fisher_of_layer(a: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
  """mean_i g_i^2 of a dense layer's (kernel [d_in, d_out], bias [d_out]) scores."""
  d2 = d * d
  return (a * a).T @ d2 / a.shape[0], jnp.mean(d2, axis=0)


@jax.custom_batching.custom_vmap
def _inverse_cholesky(m: jax.Array) -> jax.Array:
  """L^-1 for m = L L^T (small, symmetric positive definite): x^T m^-1 x = |L^-1 x|^2.

  The whitened form keeps twice the digits of an explicit inverse. Under vmap the
  matrices are factorised one after another (below): jaxlib's batched LAPACK kernels
  wait on the intra-op thread pool they may be running on, which deadlocks XLA:CPU
  when the pool is small (seen with 4 experts on 2 cores)."""
  factor = jnp.linalg.cholesky(m)
  eye = jnp.eye(m.shape[0], dtype=m.dtype)
  return jax.scipy.linalg.solve_triangular(factor, eye, lower=True)


@_inverse_cholesky.def_vmap
def _inverse_cholesky_vmap(axis_size, in_batched, m):
  del axis_size
  if not in_batched[0]:
    return _inverse_cholesky(m), False
  return jax.lax.map(_inverse_cholesky, m), True


@jax.custom_jvp
def inverse_cholesky(m: jax.Array) -> jax.Array:
  """`_inverse_cholesky` with a derivative, for MAML through a K-FAC-weighted inner step:
  W = L^-1 moves by dW = -Phi(W dM W^T) W, Phi taking the lower triangle with half its
  diagonal (from dM = dL L^T + L dL^T with L^-1 dL lower triangular)."""
  return _inverse_cholesky(m)


@inverse_cholesky.defjvp
def _inverse_cholesky_jvp(primals, tangents):
  (m,), (dm,) = primals, tangents
  w = _inverse_cholesky(m)
  s = w @ dm @ w.T
  half_lower = jnp.tril(jnp.ones_like(s)) - 0.5 * jnp.eye(s.shape[-1], dtype=s.dtype)
  return w, -(s * half_lower) @ w


def _row_sums(x: jax.Array) -> jax.Array:
  """sum(x, axis=1) as a matrix-vector product: after a matmul, XLA:CPU fuses a
  reduction with it (and with every other layer's) into one slow YNNPACK fusion, the
  slowest op of a FIM step in a profile; a dot it leaves alone."""
  return x @ jnp.ones((x.shape[1],), x.dtype)


def _tap_factors(a: jax.Array, d: jax.Array, fisher: str) -> tuple[jax.Array, jax.Array]:
  """A layer's batch Fisher from its taps: diag (kernel, bias) mean g^2; kfac (A, G)."""
  if fisher == 'diag':
    return diag_fisher_of_layer(a, d)
  n = a.shape[0]
  mean_a = jnp.mean(a, axis=0)
  big_a = jnp.block([[a.T @ a / n, mean_a[:, None]],
                     [mean_a[None, :], jnp.ones((1, 1), a.dtype)]])
  return big_a, d.T @ d / n


def _layer_quadratic_forms(a, d, factors, fisher: str, damping: float, scale) -> jax.Array:
  """One layer's share of q_i, given its Fisher factors in the taps' scaled units."""
  d_in = a.shape[1]
  if fisher == 'diag':
    f_kernel, f_bias = factors
    damp = damping / scale**2
    per_unit = (a * a) @ (1.0 / (f_kernel + damp)) + 1.0 / (f_bias + damp)
    return _row_sums(d * d * per_unit)
  big_a, big_g = factors
  root = jnp.sqrt(damping)
  white_a = inverse_cholesky(big_a + root * jnp.eye(d_in + 1, dtype=a.dtype))
  white_g = inverse_cholesky(big_g + root / scale**2 * jnp.eye(d.shape[1], dtype=d.dtype))
  qa = _row_sums(jnp.square(a @ white_a[:, :d_in].T + white_a[:, d_in]))
  qg = _row_sums(jnp.square(d @ white_g.T))
  return qa * qg


def quadratic_forms_taps(taps: Taps, fisher: str, damping: float,
                         running: Optional[RunningFisher] = None, decay: float = 0.0):
  """q_i = sum over layers of g_i^T F^-1 g_i, without per-sample gradients.

  A layer's score is g_i = [a_i, 1] d_i^T (kernel rows, then the bias).
  diag: F = mean g^2 + damping, so q_i = sum_k d_ik^2 (sum_j a_ij^2 / F_jk + 1 / F_bk):
        one matmul for F and one for q, neither the size of a per-sample gradient.
  kfac: F ~ (A + sqrt(damping) I) (x) (G + sqrt(damping) I), A = mean [a,1][a,1]^T,
        G = mean d d^T; the quadratic form of an outer product factorises:
        q_i = |L_A^-1 [a_i,1]|^2 |L_G^-1 d_i|^2 with Cholesky factors L, and
        L_A^-1 [a_i,1] = a_i @ (L_A^-1)[:, :d_in]^T + (L_A^-1)[:, d_in] (no ones column).
  The scores in `taps` are divided by taps.scale, so F is too: damping / scale^2 on the
  score side keeps every q exact. With `running`, F (diag, or A and G) is the running
  estimate updated with this batch; returns (q, the updated RunningFisher) then.
  """
  if fisher not in ('diag', 'kfac'):
    raise UserError(f'fisher={fisher!r} is not a tap estimator: use diag or kfac')
  # Materialised once: otherwise XLA:CPU recomputes each layer's sine into every
  # transpose of its input.
  layers = [jax.lax.optimization_barrier((a, d)) for a, d in zip(taps.inputs, taps.scores)]
  factors = [_tap_factors(a, d, fisher) for a, d in layers]
  new = None
  if running is not None:     # A is free of the residual's scale, G and diag carry scale^2
    powers = (2, 2) if fisher == 'diag' else (0, 2)
    factors, new = _update_running(running, factors, taps.scale, decay, powers)
  total = 0.0
  for (a, d), f in zip(layers, factors):
    total = total + _layer_quadratic_forms(a, d, f, fisher, damping, taps.scale)
  return total if running is None else (total, new)


def diag_fisher(apply_fn, params, x: jax.Array, y: jax.Array):
  """Diagonal empirical Fisher mean_i g_i^2 as a pytree shaped like params (for EWC)."""
  if has_dense_taps(apply_fn):
    field = getattr(apply_fn, '__self__', apply_fn)
    _, taps = dense_taps(apply_fn, params, x, y)
    out = {}
    for name, a, d in zip(field.module.dense_names, taps.inputs, taps.scores):
      kernel, bias = diag_fisher_of_layer(a, d)
      out[name] = {'kernel': kernel * taps.scale**2, 'bias': bias * taps.scale**2}
    return jax.tree_util.tree_map(lambda f, p: f.reshape(p.shape).astype(p.dtype), out, params)
  grads = jax.vmap(jax.grad(_log_likelihood, argnums=1), in_axes=(None, None, 0, 0))(
      apply_fn, params, x, y)
  return jax.tree_util.tree_map(lambda g: jnp.mean(g * g, axis=0), grads)


def model_diag_fisher(apply_fn, params, x: jax.Array):
  """Diagonal of the model's Fisher, mean_i J_i^T J_i, as a pytree shaped like params.

  For the unit Gaussian likelihood the Fisher is E_y[g g^T] = J^T J whatever the targets
  (Kirkpatrick et al.'s EWC uses this one), unlike `diag_fisher`'s empirical
  mean_i (J_i^T r_i)^2, which vanishes as a task is fitted. Exactly, one output at a time:
  the score with residual e_c is -J^T e_c, and diag(J^T J) = sum_c (J^T e_c)^2.
  """
  out = jax.lax.stop_gradient(apply_fn(params, x))
  total = None
  for c in range(out.shape[-1]):
    f = diag_fisher(apply_fn, params, x, out - jax.nn.one_hot(c, out.shape[-1], dtype=out.dtype))
    total = f if total is None else jax.tree_util.tree_map(jnp.add, total, f)
  return total
