"""MEIL-NeRF (Chung et al., 2022): CL plus self-distillation on rays of earlier tasks.

One network learns the tasks in order, k steps each. While learning task t > 0, every
step adds
    lambda * mean_r rho(f(x_r) - f_prev(x_r)),   rho(e) = sqrt(e^2 + eps^2), eps = 1e-3,
on `replay_size` inputs x_r of earlier tasks (rays for scenes) drawn afresh at every step
(as MEIL-NeRF samples past rays every iteration), with pseudo-labels f_prev(x_r)
rendered by the network as it was when task t began (the frozen previous model, the
teacher). Only inputs are replayed, never the earlier targets, which is what sets
MEIL-NeRF apart from ER. rho is the Charbonnier penalty, the robust loss MEIL-NeRF
uses on its self-distillation term, since pseudo-labels of a not-yet-perfect model are
unreliable; the weight is one lambda (`replay_lambda`, chosen on meta-validation by
`tuning`). (Recalled from the paper, not re-read here; MEIL-NeRF's ray generator
network, which regenerates past camera rays instead of storing them, is replaced by
drawing from earlier tasks' ray pools, which the episode holds anyway.)

The current task is fitted in batches where the modality draws them (fresh rays for
scenes); replayed inputs are drawn uniformly from the earlier tasks' whole pools, a
pure function of (task, step), and pass through the modality's draw like ER's replayed
samples (scenes: jittered samples, the same for teacher and student).
"""
import jax
import jax.numpy as jnp
import optax

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base, er
from mclnf_jax.learners.setup import Setup

EPS = 1e-3
SEED = 0


def charbonnier(residual: jax.Array, eps: float = EPS) -> jax.Array:
  return jnp.mean(jnp.sqrt(jnp.square(residual) + eps**2))


def replay_inputs(context_x: jax.Array, t: jax.Array, size: int, step=0) -> jax.Array:
  """`size` inputs drawn uniformly from tasks 0..t-1 ([T, m, d] -> [size, d]), afresh
  for every (t, step)."""
  m = context_x.shape[1]
  flat = context_x.reshape(-1, context_x.shape[-1])
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(SEED), t), step)
  index = jax.random.randint(key, (size,), 0, jnp.maximum(t * m, 1))
  return flat[index]


def meil_nerf_learner(name: str, s: Setup, *, replay_size: int, replay_lambda: float):
  if replay_size < 1 or replay_lambda < 0:
    raise UserError(f'config.methods.{name}: replay_size={replay_size} must be >= 1 and '
                    f'replay_lambda={replay_lambda} >= 0')
  opt = s.tto_opt
  batches = s.tto_batches
  replayed = er.replay_batch(batches)

  def adapt(state, episode, steps):
    zeros = jnp.zeros((replay_size, episode.context_y.shape[-1]), episode.context_y.dtype)

    def task(state, x, y, t):
      teacher = jax.lax.stop_gradient(state['params'])   # the model as task t begins
      lam = jnp.where(t > 0, replay_lambda, 0.0)         # nothing to keep on task 0

      def step(carry, bx, by):
        params, opt_state, k = carry
        xr, _ = replayed(replay_inputs(episode.context_x, t, replay_size, k), zeros, k)
        labels = jax.lax.stop_gradient(s.apply(teacher, xr))
        loss = lambda p: (s.loss(s.apply, p, bx, by)
                          + lam * charbonnier(s.apply(p, xr) - labels))
        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, k + 1

      params, opt_state, _ = base.run_batched(
          step, (state['params'], state['opt'], jnp.zeros((), jnp.int32)), x, y, steps,
          batches)
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
