"""Losses of the form loss(apply_fn, params, inputs, targets) -> scalar.

`fim_weighted_mse` is public API: the Fisher-information-weighted MSE of the paper
(eq. 2-3), usable with any `apply_fn(params, inputs [m, d]) -> predictions [m, q]`.
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from mclnf_jax import fisher as fisher_lib
from mclnf_jax.errors import UserError


def mse(apply_fn, params, inputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over samples and channels of the squared residual."""
  return jnp.mean(jnp.square(apply_fn(params, inputs) - targets))


def _weights(q: jax.Array, lam: float, normalize: bool, max_ratio: Optional[float]) -> jax.Array:
  """w = 1 + lam q (eq. 3), or with normalize (1 + lam r) / mean(1 + lam r), r = q / mean q:
  mean one. With max_ratio, r is first clipped at max_ratio (q at max_ratio x mean q):
  bounded weights, as the paper's Theorem 3 assumes.

  Live functions of the params: the loss's gradient holds them constant (`_held_weights`),
  the meta-gradient, differentiating that gradient, follows them."""
  mean = jnp.mean(q)
  fitted = mean <= jnp.finfo(q.dtype).tiny   # all-zero scores: every sample weighs the same
  ratio = jnp.where(fitted, 1.0, q / jnp.maximum(mean, 1e-30))
  if max_ratio is not None:
    ratio = jnp.minimum(ratio, max_ratio)
  if normalize:
    w = 1.0 + lam * ratio
    return w / jnp.mean(w)
  return 1.0 + lam * (q if max_ratio is None else ratio * mean)


def _held_weights(value_and_grads):
  """The FIM loss as a function whose gradient holds the weights constant (eq. 2-3).

  value_and_grads(params, x, y, running, decay) -> ((loss, w, running'), grads), grads
  = sum_i w_i d(loss_i)/d params with w the live weights. A custom VJP hands `grads` to
  jax.grad. It is built from ordinary ops, so MAML, differentiating an inner step,
  differentiates `grads` as computed, through the weights and the Fisher too: the exact
  meta-gradient of the inner loop that runs (weights stopped there as well give one that
  is not: tests/test_fim.py).
  """
  @jax.custom_vjp
  def loss_fn(params, x, y, running, decay):
    return value_and_grads(params, x, y, running, decay)[0]

  def fwd(params, x, y, running, decay):
    out, grads = value_and_grads(params, x, y, running, decay)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, (x, y, running, decay))
    return out, (grads, zeros)

  def bwd(residuals, cotangents):
    grads, zeros = residuals
    g_loss = cotangents[0]
    return (jax.tree_util.tree_map(lambda g: g_loss * g, grads), *zeros)

  loss_fn.defvjp(fwd, bwd)
  return loss_fn


def _tapped_loss(apply_fn, lam, fisher, damping, normalize, max_ratio):
  """The FIM loss for dense-layer fields: value and gradient from one fwd + one bwd pass.

  The per-sample pre-activation scores d_i that give q_i also give the gradient: with
  weights held constant, dL/dz_i = -(2 w_i / (m q)) d_i, and each layer's gradient is
  a^T (dL/dz) (the weight-gradient matmul backprop would do anyway). A custom VJP hands
  that gradient to JAX (`_held_weights`). For a grouped prediction (rendering) the
  taps are [N, K, d], field row s of prediction row i takes dL/dz_s = c_i d_s, and the
  layer gradient sums a_s^T (c_i d_s) over every field row.
  """
  field, grouped = fisher_lib.tap_source(apply_fn)
  names = field.module.dense_names
  taps_of = fisher_lib.grouped_taps if grouped else fisher_lib.dense_taps
  forms = fisher_lib.quadratic_forms_grouped if grouped else fisher_lib.quadratic_forms_taps

  def layer_grads(a, cd):
    if grouped:      # [N, K, d] -> [N K, d]: one weight-gradient matmul per layer
      a, cd = a.reshape(-1, a.shape[-1]), cd.reshape(-1, cd.shape[-1])
    return {'kernel': a.T @ cd, 'bias': jnp.sum(cd, axis=0)}

  def value_and_grads(params, x, y, running, decay):
    out, taps = taps_of(apply_fn, params, x, y)
    if running is None:
      q, new = forms(taps, fisher, damping), None
    else:
      q, new = forms(taps, fisher, damping, running, decay)
    w = _weights(q, lam, normalize, max_ratio)
    loss = jnp.mean(w[:, None] * jnp.square(out - y))   # = mean_i w_i mean_c r_ic^2
    c = (-2.0 / out.size) * taps.scale * w              # dL/dz = c * d (d scaled)
    c = c.reshape(c.shape + (1,) * (taps.scores[0].ndim - 1))
    grads = {n: layer_grads(a, c * d) for n, a, d in zip(names, taps.inputs, taps.scores)}
    grads = jax.tree_util.tree_map(lambda g, p: g.astype(p.dtype), grads, params)
    return (loss, w, new), grads

  return _held_weights(value_and_grads)


def _reference_loss(apply_fn, lam, fisher, damping, normalize, max_ratio):
  """The FIM loss from materialised per-sample scores (any differentiable apply_fn): the
  weights from `vmap(grad)`, the gradient one VJP of the per-sample errors weighted by
  them (`_held_weights`)."""
  def value_and_grads(params, x, y, running, decay):
    scores = fisher_lib.per_sample_scores(apply_fn, params, x, y)
    if running is None:
      q, new = fisher_lib.quadratic_forms_reference(scores, fisher, damping), None
    else:
      q, new = fisher_lib.quadratic_forms_reference(scores, fisher, damping, running, decay)
    w = _weights(q, lam, normalize, max_ratio)
    squares, vjp = jax.vjp(lambda p: jnp.square(apply_fn(p, x) - y), params)
    (grads,) = vjp(jnp.broadcast_to(w[:, None] / squares.size, squares.shape))
    return (jnp.mean(w[:, None] * squares), w, new), grads

  return _held_weights(value_and_grads)


def fim_weighted_mse(apply_fn, params, inputs: jax.Array, targets: jax.Array, *, lam: float,
                     fisher: str = 'diag', damping: float = 1e-8, normalize: bool = True,
                     max_ratio: Optional[float] = 2.0, return_weights: bool = False,
                     running: Optional[fisher_lib.RunningFisher] = None, decay: float = 0.0):
  """MSE with each sample weighted by its Fisher information score (eq. 2-3).

  r_i = apply_fn(params, inputs)[i] - targets[i]
  g_i = grad_params log N(targets_i; prediction_i, I) = -J_i^T r_i   (all leaves)
  F   = 'exact': mean_i g_i g_i^T + damping I       (small models only)
        'diag':  mean_i g_i * g_i + damping
        'kfac':  per dense layer (A + sqrt(damping) I) (x) (G + sqrt(damping) I), with
                 A = mean a a^T over layer inputs (a 1 appended for the bias) and
                 G = mean d d^T over pre-activation scores; needs a field made of dense
                 layers (a `mclnf_jax.fields.Field` or its `.apply`, e.g. SIREN)
  q_i = g_i^T F^-1 g_i,  r_i = min(q_i / mean(q), max_ratio)  (max_ratio=None: no clip)
  w_i = (1 + lam * r_i) / mean(1 + lam * r)   normalize=True (the default)
        1 + lam * r_i * mean(q)               normalize=False (eq. 3 as written when
                                              max_ratio=None)
  loss = mean_i(w_i * mean_c r_ic^2), its gradient sum_i w_i d(loss_i)/d params with the
  weights held constant, so lam = 0 is exactly MSE. Returns loss, or (loss, w) with
  return_weights=True. Differentiating that gradient again (MAML's meta-gradient through
  an inner step) follows the weights' and the Fisher's dependence on the params: the
  exact derivative of the inner loop as it runs.

  The default departs from eq. 3 on purpose: normalised weights average exactly 1, so
  the loss is on the MSE's scale whatever the model size (q sums to the parameter count
  for the exact Fisher), and at one learning rate the FIM loss takes the same mean step
  as the MSE: lam then only re-weights samples, it never changes the step size. And
  the weights are bounded by default (no sample counts more than 1 + 2 lam times the
  least), as the paper's generalisation bound (Theorem 3) assumes: unbounded weights
  concentrate on the samples of largest curvature, and SGD at the MSE's rate becomes
  unstable in the directions they raise (BUILD_NOTES, audio).

  F is estimated from the same batch. For dense-layer fields 'diag' and 'kfac' never
  form per-sample gradients (a few matmuls per layer); for a `types.GroupedPrediction`
  over such a field (volume rendering) 'diag' takes each row's layer scores from the
  same taps (one forward and one backward pass through the renderer; 'kfac' is refused
  there); otherwise the scores come from `vmap(grad)`, which works for any
  differentiable apply_fn.

  running: the task's Fisher so far (Algorithm 1, l. 8 and 16; start it with
  `fisher.init_running(apply_fn, params, fisher)`). F is then the running estimate
  decay F_prev + (1 - decay) F_batch (the batch's own F for the task's first batch;
  decay 0 is the per-batch F), held constant in the gradient like the weights, and the
  updated estimate is returned last: (loss, running) or (loss, w, running).
  """
  if fisher not in fisher_lib.ESTIMATORS:
    raise UserError(f'unknown fisher={fisher!r}: use one of {", ".join(fisher_lib.ESTIMATORS)}')
  if fisher_lib.uses_taps(apply_fn, fisher):
    build = _tapped_loss
  elif fisher == 'kfac':
    raise UserError('fisher=kfac needs a field made of dense layers (a mclnf_jax Field); '
                    'use diag or exact for other apply functions')
  else:
    build = _reference_loss
  if max_ratio is not None and not max_ratio >= 1:
    raise UserError(f'max_ratio={max_ratio} must be >= 1 (or None for unbounded weights)')
  loss, w, new = build(apply_fn, lam, fisher, damping, normalize, max_ratio)(
      params, inputs, targets, running, None if running is None else jnp.asarray(decay))
  out = (loss, w) if return_weights else (loss,)
  out = out if running is None else (*out, new)
  return out if len(out) > 1 else loss


def start_running_fisher(loss, apply_fn, params) -> fisher_lib.RunningFisher:
  """The empty running Fisher of a task for the FIM loss `loss` (from `by_name('fim')`)."""
  kind = getattr(loss, 'keywords', {}).get('fisher') \
      if getattr(loss, 'func', None) is fim_weighted_mse else None
  if kind is None:
    raise UserError('a running Fisher needs the FIM loss: set the learner\'s loss to fim '
                    '(config.methods.<name>.loss=fim)')
  return fisher_lib.init_running(apply_fn, params, kind)


def by_name(name: str, fim_config=None):
  """The inner/meta loss of a learner from its config name ('mse' or 'fim')."""
  if name == 'mse':
    return mse
  if name == 'fim':
    return functools.partial(fim_weighted_mse, lam=fim_config.lam, fisher=fim_config.fisher,
                             damping=fim_config.damping, normalize=fim_config.normalize,
                             max_ratio=fim_config.max_ratio or None)
  raise UserError(f'unknown loss {name!r}: use mse or fim')
