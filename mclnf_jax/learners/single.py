"""One network trained on the signal: offline (OL, MOL) or task after task (CL, MAML+CL)."""
import jax
import jax.numpy as jnp

from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def single_network(name: str, s: Setup, *, meta_learned: bool, offline: bool) -> base.Learner:
  """Builds the four single-network learners from two switches.

  offline: k steps on the whole signal (OL, MOL), else k steps on each task in order
    (CL, MAML+CL), with no protection against forgetting.
  meta_learned: the init is meta-trained with eq. (1) through the same adaptation.
  """
  def start_with(opt):
    # Offline: draws counts the batches fitted so far, so that chained adaptations
    # continue the sequence of batches (offline learners are resumable).
    draws = {'draws': jnp.zeros((), jnp.int32)} if offline else {}
    return lambda params: {'params': params, 'opt': opt.init(params), **draws}

  def adapt_with(opt, batches, first_order=False):
    def fit(state, x, y, steps, batches, start):
      params, opt_state = base.fit(s.loss, s.apply, opt, state['params'], state['opt'],
                                   x, y, steps, first_order=first_order, batches=batches,
                                   start=start)
      return {**state, 'params': params, 'opt': opt_state}

    def adapt(state, episode, steps):
      if offline:
        x, y, whole = base.whole_signal_batches(episode, batches)
        state = fit(state, x, y, steps, whole, state['draws'])
        return {**state, 'draws': state['draws'] + steps}
      return base.over_tasks(lambda st, x, y, t: fit(st, x, y, steps, batches, 0),
                             state, episode)
    return adapt

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.inner_batches, s.first_order)(state, episode, s.inner_steps)
    query = s.queries(episode)    # grids: the tasks themselves; scenes: unfitted rays
    loss = base.mean_task_loss(s.loss, s.apply, state['params'], query)
    pred = jax.vmap(s.apply, in_axes=(None, 0))(state['params'], query.context_x)
    return loss, {'mse': ((pred - query.context_y) ** 2).mean()}

  return base.Learner(
      name=name, meta_learned=meta_learned, resumable=offline,
      init=s.meta_init, start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for(), s.tto_batches),
      predict=lambda state, x: s.apply(state['params'], x),
      meta_loss=meta_loss if meta_learned else None)
