"""EWC (Kirkpatrick et al., 2017): CL plus a quadratic pull towards earlier tasks' params.

While learning task t the loss is L_t(theta) + (lambda/2) sum_j F_j (theta_j - theta*_j)^2,
with F the diagonal empirical Fisher (`fisher.diag_fisher`) summed over the finished
tasks, each taken at the params where its task ended, and theta* the params at the end
of the previous task (one anchor, as online EWC; with one earlier task both readings
agree). On the first task F = 0, so EWC equals CL there. Where tasks are fitted in
batches (scenes), F is taken on one more batch of the task, drawn after its last step.
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
      fx, fy = base.batch_at(batches, x, y, steps)   # the task (grids), a fresh batch (scenes)
      f = jax.tree_util.tree_map(jnp.add, f, fisher.diag_fisher(s.apply, params, fx, fy))
      return {'params': params, 'opt': opt_state, 'fisher': f, 'anchor': params}
    return base.over_tasks(task, state, episode)

  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init, start=start,
      adapt=adapt, predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.ewc."""
  m = setup.method
  return ewc_learner('ewc', setup, ewc_lambda=m.ewc_lambda)
