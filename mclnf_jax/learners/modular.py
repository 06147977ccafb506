"""Ours (mod): one expert per task, every expert started from the meta-learned init.

Expert i only ever sees task i, so adapting the experts one after another equals
adapting them side by side: `jax.vmap` over the expert axis runs all tasks' inner loops
as batched matmuls, and evaluation may chain step counts (the learner is resumable).
Predictions on the whole signal route each input to its expert (Algorithm 1, l. 28-30).
"""
import jax
import jax.numpy as jnp

from mclnf_jax.fields import experts
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def modular(name: str, s: Setup) -> base.Learner:
  routed = experts.routed_apply(s.field, s.route)

  def start_with(opt):
    def start(shared):
      stacked = experts.experts_from_shared(shared, s.num_tasks)
      return {'params': stacked, 'opt': jax.vmap(opt.init)(stacked),
              'draws': jnp.zeros((), jnp.int32)}   # batches fitted so far (resumable)
    return start

  def adapt_with(opt, batches, first_order=False):
    def adapt(state, episode, steps):
      fit_one = lambda p, o, x, y: base.fit(s.loss, s.apply, opt, p, o, x, y, steps,
                                            first_order=first_order, batches=batches,
                                            start=state['draws'])
      params, opt_state = jax.vmap(fit_one)(state['params'], state['opt'],
                                            episode.context_x, episode.context_y)
      return {'params': params, 'opt': opt_state, 'draws': state['draws'] + steps}
    return adapt

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.inner_batches, s.first_order)(state, episode, s.inner_steps)
    # (1/t) sum_i L_i(f_theta_i): expert i on its own task's query set (eq. 1 / eq. 2);
    # for grids the task's context set, for scenes rays apart from those it fitted.
    query = s.queries(episode)
    per_task = jax.vmap(lambda p, x, y: s.loss(s.apply, p, x, y))(
        state['params'], query.context_x, query.context_y)
    pred = jax.vmap(s.apply)(state['params'], query.context_x)
    return per_task.mean(), {'mse': ((pred - query.context_y) ** 2).mean()}

  return base.Learner(
      name=name, meta_learned=True, resumable=True,
      init=s.meta_init, start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for(), s.tto_batches),
      predict=lambda state, x: s.predict_fn(routed)(state['params'], x),
      meta_loss=meta_loss)


def make(setup):
  return modular('modular', setup)
