"""Ours (MIM): the modular learner with the FIM loss (eq. 2-3) in inner loop and meta-loss.

The loss comes from `config.methods.modular_fim.loss = 'fim'` and `config.fim` (lambda,
estimator). With `methods.modular_fim.fisher_decay` = 0 (the default) each step's
Fisher is its batch's and everything else is the modular learner. Above 0 each expert
keeps the running Fisher of Algorithm 1 (initialised per task, l. 8, updated after each
inner step, l. 16): F_t = decay F_{t-1} + (1 - decay) F_batch, F_1 the first batch's.
It rides in the inner loop's carry (through `lax.scan` under `jax.grad` in
meta-training, through the `fori_loop` at test time) and in the adapted state, so
chained evaluation continues it; the meta-loss folds the query batch in last.
"""
import jax
import jax.numpy as jnp
import optax

from mclnf_jax import losses
from mclnf_jax.errors import UserError
from mclnf_jax.fields import experts
from mclnf_jax.learners import base
from mclnf_jax.learners.modular import modular
from mclnf_jax.learners.setup import Setup


def fit_running(s: Setup, decay: float, optimizer: optax.GradientTransformation, params,
                opt_state, fisher, x: jax.Array, y: jax.Array, steps, *,
                first_order: bool = False, batches: base.Batches = base.FULL, start=0):
  """`base.fit` of the FIM loss with the task's running Fisher in the carry:
  returns (params, opt_state, fisher) after `steps` steps."""
  def step(carry, x, y):
    params, opt_state, fisher = carry
    grads, fisher = jax.grad(
        lambda p: s.loss(s.apply, p, x, y, running=fisher, decay=decay), has_aux=True)(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, fisher
  return base.run_batched(step, (params, opt_state, fisher), x, y, steps, batches, start)


def running_modular(name: str, s: Setup, decay: float) -> base.Learner:
  """The modular learner whose experts each carry a running Fisher (any decay in [0, 1);
  0 takes each batch's Fisher, the per-batch path through this carry)."""
  plain = modular(name, s)

  def start_with(opt):
    def start(shared):
      stacked = experts.experts_from_shared(shared, s.num_tasks)
      empty = losses.start_running_fisher(s.loss, s.apply, shared)
      return {'params': stacked, 'opt': jax.vmap(opt.init)(stacked),
              'fisher': jax.tree_util.tree_map(
                  lambda f: jnp.broadcast_to(f, (s.num_tasks,) + f.shape), empty),
              'draws': jnp.zeros((), jnp.int32)}   # batches fitted so far (resumable)
    return start

  def adapt_with(opt, batches, first_order=False):
    def adapt(state, episode, steps):
      fit_one = lambda p, o, f, x, y: fit_running(s, decay, opt, p, o, f, x, y, steps,
                                                  first_order=first_order, batches=batches,
                                                  start=state['draws'])
      params, opt_state, fisher = jax.vmap(fit_one)(
          state['params'], state['opt'], state['fisher'], episode.context_x, episode.context_y)
      return {'params': params, 'opt': opt_state, 'fisher': fisher,
              'draws': state['draws'] + steps}
    return adapt

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.inner_batches, s.first_order)(state, episode, s.inner_steps)
    # Algorithm 1, l. 23: the query loss with the task's Fisher, the query batch folded in.
    query = s.queries(episode)
    per_task = jax.vmap(lambda p, f, x, y: s.loss(s.apply, p, x, y, running=f, decay=decay)[0])(
        state['params'], state['fisher'], query.context_x, query.context_y)
    pred = jax.vmap(s.apply)(state['params'], query.context_x)
    return per_task.mean(), {'mse': ((pred - query.context_y) ** 2).mean()}

  return plain._replace(
      start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for(), s.tto_batches), meta_loss=meta_loss)


def fisher_decay(s: Setup) -> float:
  """methods.<name>.fisher_decay, checked: in [0, 1), and only with the FIM loss."""
  decay = float(s.method.get('fisher_decay', 0.0))
  if not 0.0 <= decay < 1.0:
    raise UserError(f'fisher_decay={decay} is outside [0, 1): use 0 for the per-batch '
                    'Fisher or e.g. 0.9 for a running one')
  if decay and s.method.get('loss', 'fim') != 'fim':
    raise UserError('fisher_decay > 0 needs the FIM loss: set methods.modular_fim.loss=fim '
                    'or fisher_decay=0')
  return decay


def make(setup):
  decay = fisher_decay(setup)
  if not decay:
    return modular('modular_fim', setup)
  return running_modular('modular_fim', setup, decay)
