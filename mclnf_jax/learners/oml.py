"""OML (Javed & White, 2019): a meta-learned representation, an adapted prediction head.

The network's first `rln_layers` dense layers form the representation (RLN), updated
only by the outer loop; the remaining layers form the prediction network (PLN), the only
part the inner loop updates, task after task, k steps each. The meta-loss (eq. 1 over
all tasks) differentiates through that inner trajectory into both the RLN and the PLN's
init: second order by default, first order with `meta.first_order`. At test time too,
only the PLN adapts.
"""
import jax

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def layer_order(s: Setup) -> list[str]:
  """The field's top-level layers, input first: `dense_names` where the module lists
  them (SIREN), else the order in which the module creates them (read from the keys of
  its init, traced abstractly so nothing is computed)."""
  names = getattr(s.field.module, 'dense_names', None)
  if names is not None:
    return list(names)
  order = []

  def init(key):
    params = s.field.init(key)
    order.extend(params)          # creation order, before any pytree sorts the keys
    return params
  jax.eval_shape(init, jax.random.key(0))
  return order


def rln_names(s: Setup, rln_layers: int) -> list[str]:
  """Names of the representation layers: the first rln_layers layers."""
  names = layer_order(s)
  if not 0 < rln_layers < len(names):
    raise UserError(f'config.methods.oml.rln_layers={rln_layers} must be in '
                    f'[1, {len(names) - 1}] for a field of {len(names)} layers')
  return names[:rln_layers]


def oml_learner(name: str, s: Setup, *, rln_layers: int) -> base.Learner:
  rln_keys = rln_names(s, rln_layers)

  def split(params):
    """Full params -> (rln, pln): two dicts of layers."""
    rln = {k: v for k, v in params.items() if k in rln_keys}
    pln = {k: v for k, v in params.items() if k not in rln_keys}
    return rln, pln

  def full(state):
    return {**state['rln'], **state['pln']}

  def start_with(opt):
    def start(params):
      rln, pln = split(params)
      return {'rln': rln, 'pln': pln, 'opt': opt.init(pln)}
    return start

  def adapt_with(opt, batches, first_order=False):
    def adapt(state, episode, steps):
      apply_pln = lambda pln, x: s.apply({**state['rln'], **pln}, x)

      def task(carry, x, y, t):
        pln, opt_state = base.fit(s.loss, apply_pln, opt, carry['pln'], carry['opt'], x, y,
                                  steps, first_order=first_order, batches=batches)
        return {'pln': pln, 'opt': opt_state}
      inner = base.over_tasks(task, {'pln': state['pln'], 'opt': state['opt']}, episode)
      return {**state, **inner}
    return adapt

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.inner_batches, s.first_order)(state, episode, s.inner_steps)
    params = full(state)
    query = s.queries(episode)    # grids: the tasks themselves; scenes: unfitted rays
    loss = base.mean_task_loss(s.loss, s.apply, params, query)
    pred = jax.vmap(s.apply, in_axes=(None, 0))(params, query.context_x)
    return loss, {'mse': ((pred - query.context_y) ** 2).mean()}

  return base.Learner(
      name=name, meta_learned=True, resumable=False, init=s.meta_init,
      start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for(), s.tto_batches),
      predict=lambda state, x: s.apply(full(state), x), meta_loss=meta_loss)


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.oml."""
  m = setup.method
  return oml_learner('oml', setup, rln_layers=m.rln_layers)
