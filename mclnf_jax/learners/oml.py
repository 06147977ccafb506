"""OML (Javed & White, 2019): a meta-learned representation, an online prediction head.

The network's first `rln_layers` dense layers form the representation (RLN), updated
only by the outer loop; the remaining layers form the prediction network (PLN), the only
part the inner loop updates, task after task, k steps each. As in the paper the inner
trajectory is online: on grids each step fits the next `online_batch` samples of the
task (a fixed shuffled order per task, cycled), not the whole task; scenes fit their
fresh ray batches, already a stream. `online_batch = 0` is the earlier full-batch
reading (every step fits the whole task).

The meta-loss is the paper's: the loss, after the whole trajectory, on the samples the
trajectory fitted (S_traj) together with a separately drawn "remember" set (S_rand)
standing for the whole signal: each task's meta-loss query set (grids: every sample of
the signal; scenes: rays held apart from the inner loop's), weighted by their sizes.
It differentiates through the inner trajectory into both the RLN and the PLN's init:
second order by default, first order with `meta.first_order`. At test time too, only
the PLN adapts, online.
"""
import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup

SEED = 0   # the order in which a grid task's samples stream in


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


def cyclic_draw(pool_x, pool_y, index, size):
  """Batch `index` of `size` rows of a pool: rows [index size, (index + 1) size) mod M."""
  rows = (jnp.asarray(index, jnp.int32) * size + jnp.arange(size, dtype=jnp.int32)) \
      % pool_x.shape[0]
  return pool_x[rows], pool_y[rows]


def stream(x, y, t):
  """A grid task's samples in the order they stream in: shuffled, fixed per task."""
  order = jax.random.permutation(jax.random.fold_in(jax.random.key(SEED), t), x.shape[0])
  return x[order], y[order]


def online(batches: base.Batches, online_batch: int):
  """(batches of the trajectory, whether tasks are shuffled into a stream first)."""
  if batches.size or not online_batch:          # scenes (fresh rays), or full batch
    return batches, False
  return base.Batches(online_batch, cyclic_draw), True


def oml_learner(name: str, s: Setup, *, rln_layers: int, online_batch: int = 0) -> base.Learner:
  if online_batch < 0:
    raise UserError(f'config.methods.{name}.online_batch={online_batch} must be >= 0')
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
    batches, shuffle = online(batches, online_batch)

    def adapt(state, episode, steps):
      apply_pln = lambda pln, x: s.apply({**state['rln'], **pln}, x)

      def task(carry, x, y, t):
        if shuffle:
          x, y = stream(x, y, t)
        pln, opt_state = base.fit(s.loss, apply_pln, opt, carry['pln'], carry['opt'], x, y,
                                  steps, first_order=first_order, batches=batches)
        return {'pln': pln, 'opt': opt_state}
      inner = base.over_tasks(task, {'pln': state['pln'], 'opt': state['opt']}, episode)
      return {**state, **inner}
    return adapt

  def trajectory(episode, steps: int):
    """S_traj: the samples the inner loop fitted, per task [T, steps x batch, d]
    (None where it fits whole tasks: they are in the remember set already)."""
    batches, shuffle = online(s.inner_batches, online_batch)
    if not batches.size:
      return None

    def one(x, y, t):
      if shuffle:
        x, y = stream(x, y, t)
      bx, by = jax.vmap(lambda k: batches.draw(x, y, k, batches.size))(jnp.arange(steps))
      return bx.reshape(-1, bx.shape[-1]), by.reshape(-1, by.shape[-1])
    tasks = jnp.arange(episode.context_x.shape[0])
    return jax.vmap(one)(episode.context_x, episode.context_y, tasks)

  def meta_loss(meta_params, episode):
    opt = s.inner_for(meta_params)
    state = start_with(opt)(s.params_of(meta_params))
    state = adapt_with(opt, s.inner_batches, s.first_order)(state, episode, s.inner_steps)
    params = full(state)
    query = s.queries(episode)    # S_rand: grids: the whole signal; scenes: unfitted rays
    loss = base.mean_task_loss(s.loss, s.apply, params, query)
    pred = jax.vmap(s.apply, in_axes=(None, 0))(params, query.context_x)
    mse = ((pred - query.context_y) ** 2).mean()
    traj = trajectory(episode, s.inner_steps)
    if traj is not None:          # S_traj and S_rand, weighted by their sizes
      n_traj, n_rand = traj[0].shape[1], query.context_x.shape[1]
      traj_loss = base.mean_task_loss(
          s.loss, s.apply, params, episode._replace(context_x=traj[0], context_y=traj[1]))
      loss = (n_traj * traj_loss + n_rand * loss) / (n_traj + n_rand)
    return loss, {'mse': mse}

  return base.Learner(
      name=name, meta_learned=True, resumable=False, init=s.meta_init,
      start=lambda meta: start_with(s.tto_for(meta))(s.params_of(meta)),
      adapt=adapt_with(s.tto_for(), s.tto_batches),
      predict=lambda state, x: s.apply(full(state), x), meta_loss=meta_loss)


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.oml."""
  m = setup.method
  return oml_learner('oml', setup, rln_layers=m.rln_layers,
                     online_batch=m.get('online_batch', 0))
