"""EWC (Kirkpatrick et al., 2017): CL plus a quadratic pull towards earlier tasks' params.

While learning task t the loss is
  L_t(theta) + sum_{j<t} (lambda/2) sum_i F_j,i (theta_i - theta*_j,i)^2,
one penalty per finished task j, with theta*_j the params where task j ended and F_j the
diagonal of the model's Fisher there (`fisher.model_diag_fisher`: E[J^T J] for the unit
Gaussian likelihood, as in the paper). Not the empirical Fisher mean (J^T r)^2: that one
vanishes as a task is fitted (r -> 0), so its penalty is ~0 and EWC collapses to CL.

The penalties of the finished tasks add up to one quadratic with the same gradient and
curvature: sum_j F_j (theta - theta*_j)^2 = A (theta - m)^2 + const, A = sum_j F_j and
m = sum_j F_j theta*_j / A (the Fisher-weighted mean of the anchors). The state keeps A
('fisher') and m ('anchor'), so memory does not grow with the tasks; `penalty` drops the
constant (with one earlier task it is exactly Kirkpatrick's). On the first task A = 0,
so EWC equals CL there. The Fisher is taken on the task's context set (grids), or on one
more batch of it drawn after its last step (scenes).
"""
import jax
import jax.numpy as jnp

from mclnf_jax import fisher
from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def penalty(params, fisher_diag, anchor, lam: float) -> jax.Array:
  """(lam/2) sum F (params - anchor)^2 over every leaf."""
  terms = jax.tree_util.tree_map(lambda f, p, a: jnp.sum(f * jnp.square(p - a)),
                                 fisher_diag, params, anchor)
  return 0.5 * lam * sum(jax.tree_util.tree_leaves(terms))


def add_task(fisher_sum, anchor, fisher_new, params):
  """(A, m) of the finished tasks plus one more, (F_new, theta*_new):
  A' = A + F_new, m' = (A m + F_new theta*_new) / A' (m' = theta*_new where A' = 0)."""
  def one(a, m, f, p):
    total = a + f
    mean = (a * m + f * p) / jnp.where(total > 0, total, 1.0)
    return total, jnp.where(total > 0, mean, p)
  pairs = jax.tree_util.tree_map(one, fisher_sum, anchor, fisher_new, params)
  outer = jax.tree_util.tree_structure(params)
  inner = jax.tree_util.tree_structure((0, 0))
  return jax.tree_util.tree_transpose(outer, inner, pairs)


def ewc_learner(name: str, s: Setup, *, ewc_lambda: float) -> base.Learner:
  if ewc_lambda < 0:
    raise UserError(f'config.methods.{name}.ewc_lambda={ewc_lambda} must be >= 0')
  opt = s.tto_opt
  batches = s.tto_batches

  def start(params):
    return {'params': params, 'opt': opt.init(params),
            'fisher': jax.tree_util.tree_map(jnp.zeros_like, params), 'anchor': params}

  def adapt(state, episode, steps):
    def task(state, x, y, t):
      f, anchor = state['fisher'], state['anchor']
      loss = lambda apply_fn, p, xs, ys: (s.loss(apply_fn, p, xs, ys)
                                          + penalty(p, f, anchor, ewc_lambda))
      params, opt_state = base.fit(loss, s.apply, opt, state['params'], state['opt'],
                                   x, y, steps, batches=batches)
      fx, _ = base.batch_at(batches, x, y, steps)   # the task (grids), a fresh batch (scenes)
      f, anchor = add_task(f, anchor, fisher.model_diag_fisher(s.apply, params, fx), params)
      return {'params': params, 'opt': opt_state, 'fisher': f, 'anchor': anchor}
    return base.over_tasks(task, state, episode)

  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init, start=start,
      adapt=adapt, predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.ewc."""
  m = setup.method
  return ewc_learner('ewc', setup, ewc_lambda=m.ewc_lambda)
