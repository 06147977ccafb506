"""MER (Riemer et al., 2019): replay with Reptile meta-updates within and across batches.

MER keeps a reservoir buffer (as ER) and, for each incoming example, runs s batches of
sequential SGD steps, each batch holding buffer samples and the new example, with two
Reptile interpolations: within a batch theta <- theta_b + beta (theta' - theta_b), across
the s batches theta <- theta_0 + gamma (theta - theta_0). The sequential steps are what
make Reptile reward gradient alignment between old and new samples.

Our jittable version for neural fields, where a task is a set of coordinates:
* the "incoming example" is the current task's batch (the whole task for grids, fresh
  rays for scenes): one MER step is one step on it;
* a batch is two chunks trained in sequence with the test-time optimiser (lr alpha =
  tto_lr): first n buffer samples (n from `replay_ratio` as in ER, drawn afresh for
  each batch), then the current task. While the buffer is empty (the first task) the
  replay chunk is skipped, so a batch is one step on the current task;
* the interpolations act on the parameters; the optimiser state runs on through the
  sequential steps (with SGD, as in MER, it is empty);
* the buffer is filled at the end of each task (as in ER), not after every example.
With beta = gamma = 1 and one batch, a MER step is two plain optimiser steps (replay
chunk, then current task), and one plain step while the buffer is empty.
"""
import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base, er
from mclnf_jax.learners.setup import Setup


def interpolate(start, end, rate: float):
  """Reptile: start + rate * (end - start), leaf by leaf."""
  return jax.tree_util.tree_map(lambda a, b: a + rate * (b - a), start, end)


def mer_learner(name: str, s: Setup, *, buffer_size: int, replay_ratio: float, beta: float,
                gamma: float, batches_per_step: int) -> base.Learner:
  er.check_replay(name, buffer_size, replay_ratio)
  if batches_per_step <= 0:
    raise UserError(f'config.methods.{name}.batches_per_step={batches_per_step} must be '
                    'positive')
  opt = s.tto_opt
  batches = s.tto_batches
  replayed = er.replay_batch(batches)

  def task_fn(state, x, y, steps, task_key):
    n = er.replay_count(batches.size or x.shape[0], replay_ratio)
    buffer = state['buffer']

    def step(carry, bx, by):
      params, opt_state, key, k = carry
      current_loss = lambda p: s.loss(s.apply, p, bx, by)

      def one_batch(carry, key):
        params, opt_state = carry
        start = params
        if n > 0:   # replay chunk first, skipped while the buffer is empty
          rx, ry, active = er.sample_replay(buffer, key, n, x, y)
          rx, ry = replayed(rx, ry, k)
          replay_step = er.opt_step(opt, lambda p: s.loss(s.apply, p, rx, ry), params,
                                    opt_state)
          params, opt_state = er.tree_where(active, replay_step, (params, opt_state))
        params, opt_state = er.opt_step(opt, current_loss, params, opt_state)
        return (interpolate(start, params, beta), opt_state), None   # within-batch

      key, sub = jax.random.split(key)
      batch_keys = jax.random.split(sub, batches_per_step)
      (end, opt_state), _ = jax.lax.scan(one_batch, (params, opt_state), batch_keys)
      return interpolate(params, end, gamma), opt_state, key, k + 1  # across batches

    params, opt_state, _, _ = base.run_batched(
        step, (state['params'], state['opt'], task_key, jnp.zeros((), jnp.int32)), x, y,
        steps, batches)
    return {**state, 'params': params, 'opt': opt_state}

  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init,
      start=er.start_with_key(opt),
      adapt=er.with_buffer(task_fn, buffer_size),
      predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.mer."""
  m = setup.method
  return mer_learner('mer', setup, buffer_size=m.buffer_size, replay_ratio=m.replay_ratio,
                     beta=m.beta, gamma=m.gamma, batches_per_step=m.batches_per_step)
