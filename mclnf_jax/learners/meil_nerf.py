"""MEIL-NeRF (Chung et al., 2022): CL plus self-distillation on replayed inputs.

One network learns the tasks in order, k steps each. While learning task t > 0 the loss
adds lambda * mean Charbonnier(f(x_r) - f_prev(x_r)) (eps 1e-3) on `replay_size` inputs
x_r drawn from earlier tasks' inputs (rays for scenes), with pseudo-labels f_prev(x_r)
rendered by the model as it was when task t began. Only inputs are replayed, never the
earlier targets, which is what sets MEIL-NeRF apart from ER. The current task is fitted
in batches where the modality draws them (fresh rays for scenes); replayed inputs come
from earlier tasks' whole pools and are rendered at midpoint samples (teacher and
student alike).
"""
import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup

EPS = 1e-3
SEED = 0


def charbonnier(residual: jax.Array, eps: float = EPS) -> jax.Array:
  return jnp.mean(jnp.sqrt(jnp.square(residual) + eps**2))


def replay_inputs(context_x: jax.Array, t: jax.Array, size: int) -> jax.Array:
  """`size` inputs drawn uniformly from tasks 0..t-1 ([T, m, d] -> [size, d])."""
  m = context_x.shape[1]
  flat = context_x.reshape(-1, context_x.shape[-1])
  index = jax.random.randint(jax.random.fold_in(jax.random.key(SEED), t), (size,), 0,
                             jnp.maximum(t * m, 1))
  return flat[index]


def meil_nerf_learner(name: str, s: Setup, *, replay_size: int, replay_lambda: float):
  if replay_size < 1 or replay_lambda < 0:
    raise UserError(f'config.methods.{name}: replay_size={replay_size} must be >= 1 and '
                    f'replay_lambda={replay_lambda} >= 0')
  opt = s.tto_opt
  batches = s.tto_batches

  def adapt(state, episode, steps):
    def task(state, x, y, t):
      x_replay = replay_inputs(episode.context_x, t, replay_size)
      labels = jax.lax.stop_gradient(s.apply(state['params'], x_replay))
      lam = jnp.where(t > 0, replay_lambda, 0.0)      # nothing to keep on the first task
      loss = lambda apply_fn, p, xs, ys: (s.loss(apply_fn, p, xs, ys)
                                          + lam * charbonnier(apply_fn(p, x_replay) - labels))
      params, opt_state = base.fit(loss, s.apply, opt, state['params'], state['opt'],
                                   x, y, steps, batches=batches)
      return {'params': params, 'opt': opt_state}
    return base.over_tasks(task, state, episode)

  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init,
      start=lambda params: {'params': params, 'opt': opt.init(params)}, adapt=adapt,
      predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  m = setup.method
  return meil_nerf_learner('meil_nerf', setup, replay_size=m.replay_size,
                           replay_lambda=m.replay_lambda)
