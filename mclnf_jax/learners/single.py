"""One network trained on the signal: offline (OL, MOL) or task after task (CL, MAML+CL)."""
import jax

from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def single_network(name: str, s: Setup, *, meta_learned: bool, offline: bool) -> base.Learner:
  """Builds the four single-network learners from two switches.

  offline: k steps on the whole signal (OL, MOL), else k steps on each task in order
    (CL, MAML+CL), with no protection against forgetting.
  meta_learned: the init is meta-trained with eq. (1) through the same adaptation.
  """
  def start_with(opt):
    return lambda params: {'params': params, 'opt': opt.init(params)}

  def adapt_with(opt, first_order=False):
    def fit(state, x, y, steps):
      params, opt_state = base.fit(s.loss, s.apply, opt, state['params'], state['opt'],
                                   x, y, steps, first_order=first_order)
      return {'params': params, 'opt': opt_state}

    def adapt(state, episode, steps):
      if offline:
        return fit(state, *base.whole_signal(episode), steps)
      return base.over_tasks(lambda st, x, y, t: fit(st, x, y, steps), state, episode)
    return adapt

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.first_order)(state, episode, s.inner_steps)
    loss = base.mean_task_loss(s.loss, s.apply, state['params'], episode)
    pred = jax.vmap(s.apply, in_axes=(None, 0))(state['params'], episode.context_x)
    return loss, {'mse': ((pred - episode.context_y) ** 2).mean()}

  return base.Learner(
      name=name, meta_learned=meta_learned, resumable=offline,
      init=s.meta_init, start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for()),
      predict=lambda state, x: s.apply(state['params'], x),
      meta_loss=meta_loss if meta_learned else None)
