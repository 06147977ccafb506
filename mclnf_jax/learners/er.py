"""ER (Rolnick et al., 2019): CL plus replay of earlier tasks' samples.

One network learns the tasks in order, k steps each (as CL); every step's batch is the
current task's batch (the whole task for grids, fresh rays for scenes) plus samples
drawn from a reservoir buffer, so that a fraction `replay_ratio` of the batch comes from
the buffer. A task's samples (for scenes, its whole ray pool) are offered to the buffer
only when that task is finished, so the buffer only ever holds earlier tasks' samples;
while it is empty (the first task) there is no replay and ER equals CL.

The buffer holds a stated fraction of the signal, the same at every scale:
`buffer_fraction` of the signal's context samples (T tasks x m samples a task, read from
the episode's shapes: pixels for grids, pool rays for scenes), at least one slot. So a
32x32 image and a 180x180 one both keep 10% of their pixels (the default), and ER never
turns into offline learning by holding the whole signal. (The paper states no buffer
size for its ER, MER rows.)

The buffer is part of the state: fixed-size arrays, the number of samples offered so
far and a PRNG key, so adaptation stays one jittable function with fixed shapes.
Its sample shapes come from the episode (for scenes they are rays, not field inputs),
so `adapt` starts a fresh, empty buffer: every call is a new signal (not resumable).
The work on one task given the buffer so far (`with_previous`) is a function of its own,
so a stream (mclnf_jax/stream/sequential.py) that keeps one buffer across calls runs the
very steps `adapt` runs.
"""
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup
from mclnf_jax.types import Episode

Buffer = dict[str, jax.Array]
SEED = 0   # the buffer's PRNG seed (reservoir choices and replay draws)


def empty_buffer(size: int, x: jax.Array, y: jax.Array, key: jax.Array) -> Buffer:
  """Slots for samples shaped like x [..., d_x], y [..., d_y]: x [size, d_x] and
  y [size, d_y] (zeros), count [] (samples offered so far), key [2]."""
  return {'x': jnp.zeros((size, x.shape[-1]), x.dtype),
          'y': jnp.zeros((size, y.shape[-1]), y.dtype),
          'count': jnp.zeros((), jnp.int32), 'key': key}


def filled(buffer: Buffer) -> jax.Array:
  """How many slots hold a sample: min(count, size)."""
  return jnp.minimum(buffer['count'], buffer['x'].shape[0])


def reservoir_add(buffer: Buffer, x: jax.Array, y: jax.Array) -> Buffer:
  """Offers x [m, d_x], y [m, d_y] one after another (reservoir sampling, Vitter's R).

  Sample j, with n_j samples offered before it, takes slot n_j while the buffer has
  room, else a slot drawn uniformly from [0, n_j] if that slot exists. All m choices are
  drawn at once; where several samples pick one slot the last of them wins, as in the
  sequential algorithm, so every offered sample ends up held with probability size/n.
  """
  size, m = buffer['x'].shape[0], x.shape[0]
  key, sub = jax.random.split(buffer['key'])
  seen = buffer['count'] + jnp.arange(m)                       # [m]
  slot = jnp.where(seen < size, seen, jax.random.randint(sub, (m,), 0, seen + 1))
  slot = jnp.where(slot < size, slot, size)                    # size = not kept
  winner = jax.ops.segment_max(jnp.arange(m), slot, num_segments=size)  # [size]
  hit = winner >= 0
  take = jnp.clip(winner, 0, m - 1)
  return {'x': jnp.where(hit[:, None], x[take], buffer['x']),
          'y': jnp.where(hit[:, None], y[take], buffer['y']),
          'count': buffer['count'] + m, 'key': key}


def sample_replay(buffer: Buffer, key: jax.Array, n: int, x: jax.Array, y: jax.Array):
  """n buffer samples drawn uniformly (with replacement) from the filled slots.

  Returns (rx [n, d_x], ry [n, d_y], active []): while the buffer is empty, active is
  False and the current samples x, y stand in, so the inputs stay valid for any
  predictor; the caller then gives them no weight.
  """
  have = filled(buffer)
  idx = jax.random.randint(key, (n,), 0, jnp.maximum(have, 1))
  active = have > 0
  stand_in = jnp.arange(n) % x.shape[0]
  rx = jnp.where(active, buffer['x'][idx], x[stand_in])
  ry = jnp.where(active, buffer['y'][idx], y[stand_in])
  return rx, ry, active


def replay_count(m: int, ratio: float) -> int:
  """Buffer samples per step so that they are `ratio` of a batch with m current ones."""
  return int(round(m * ratio / (1.0 - ratio)))


def replay_batch(batches: base.Batches):
  """(rx, ry, k) -> replayed samples as the step's batch shows them: unchanged with full
  batches; else passed through the modality's draw (in order, at draw index k), so
  replayed rays get the same extra columns (scenes: a jitter seed) as the current batch."""
  if not batches.size:
    return lambda rx, ry, k: (rx, ry)
  return lambda rx, ry, k: batches.draw(rx, ry, k, rx.shape[0])


def opt_step(optimizer: optax.GradientTransformation, loss_of_params, params, opt_state):
  """One optimiser step on loss_of_params(params) -> scalar."""
  grads = jax.grad(loss_of_params)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
  return jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)


def buffer_slots(buffer_fraction: float, episode: Episode) -> int:
  """Slots of the buffer: buffer_fraction of the signal's T x m context samples (>= 1)."""
  total = episode.context_x.shape[0] * episode.context_x.shape[1]
  return max(1, int(round(buffer_fraction * total)))


def check_replay(name: str, buffer_fraction: float, replay_ratio: float) -> None:
  if not 0.0 < buffer_fraction <= 1.0:
    raise UserError(f'config.methods.{name}.buffer_fraction={buffer_fraction} must be in '
                    '(0, 1]: the fraction of the signal\'s samples the buffer holds')
  if not 0.0 <= replay_ratio < 1.0:
    raise UserError(f'config.methods.{name}.replay_ratio={replay_ratio} must be in [0, 1)')


def start_with_key(optimizer: optax.GradientTransformation):
  """start(params) of a replay learner: params, optimiser state and the buffer's key."""
  return lambda params: {'params': params, 'opt': optimizer.init(params),
                         'key': jax.random.PRNGKey(SEED)}


def add_buffer(state, size: int, x: jax.Array, y: jax.Array):
  """state with an empty buffer of `size` samples shaped like x, y in state['buffer'],
  seeded by (and replacing) state['key'], which `start_with_key` put there."""
  state = dict(state)
  key = state.pop('key')            # the buffer's key from now on
  state['buffer'] = empty_buffer(size, x, y, key)
  return state


def with_previous(task_fn):
  """step(state, x, y, steps) -> state: one task learnt on top of the buffer in
  state['buffer'] (earlier tasks' samples), then its samples offered to that buffer.

  task_fn(state, x, y, steps, key) trains on the task with its own PRNG key, split off
  the buffer's key first. `with_buffer` runs this step per task of an episode and a
  stream per arriving task, so both draw the same keys and give the same states.
  """
  def step(state, x, y, steps):
    task_key, buffer_key = jax.random.split(state['buffer']['key'])
    state = task_fn({**state, 'buffer': {**state['buffer'], 'key': buffer_key}},
                    x, y, steps, task_key)
    return {**state, 'buffer': reservoir_add(state['buffer'], x, y)}
  return step


def with_buffer(task_fn, buffer_fraction: float):
  """adapt(state, episode, steps) running `with_previous(task_fn)` over the tasks with a
  fresh buffer of `buffer_slots(buffer_fraction, episode)` samples."""
  step = with_previous(task_fn)

  def adapt(state, episode: Episode, steps):
    size = buffer_slots(buffer_fraction, episode)
    state = add_buffer(state, size, episode.context_x, episode.context_y)
    return base.over_tasks(lambda state, x, y, t: step(state, x, y, steps), state, episode)
  return adapt


def replay_task(s: Setup, replay_ratio: float):
  """ER's training on one task, task_fn(state, x, y, steps, task_key) of `with_previous`:
  every step fits the task's batch mixed with samples replayed from the buffer of earlier
  tasks (a fraction `replay_ratio` of the batch, none while the buffer is empty)."""
  opt = s.tto_opt
  batches = s.tto_batches
  replayed = replay_batch(batches)

  def task_fn(state, x, y, steps, task_key):
    n = replay_count(batches.size or x.shape[0], replay_ratio)
    buffer = state['buffer']

    def step(carry, bx, by):
      params, opt_state, key, k = carry
      key, sub = jax.random.split(key)
      if n == 0:
        loss = lambda p: s.loss(s.apply, p, bx, by)
      else:
        rx, ry, active = sample_replay(buffer, sub, n, x, y)
        rx, ry = replayed(rx, ry, k)
        w = jnp.where(active, replay_ratio, 0.0)   # mean over the mixed batch
        loss = lambda p: (1 - w) * s.loss(s.apply, p, bx, by) + w * s.loss(s.apply, p, rx, ry)
      return (*opt_step(opt, loss, params, opt_state), key, k + 1)

    params, opt_state, _, _ = base.run_batched(
        step, (state['params'], state['opt'], task_key, jnp.zeros((), jnp.int32)), x, y,
        steps, batches)
    return {**state, 'params': params, 'opt': opt_state}
  return task_fn


def replay_learner(name: str, s: Setup, *, buffer_fraction: float,
                   replay_ratio: float) -> base.Learner:
  """CL with a reservoir replay buffer mixed into every step."""
  check_replay(name, buffer_fraction, replay_ratio)
  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init,
      start=start_with_key(s.tto_opt),
      adapt=with_buffer(replay_task(s, replay_ratio), buffer_fraction),
      predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.er."""
  m = setup.method
  return replay_learner('er', setup, buffer_fraction=m.buffer_fraction,
                        replay_ratio=m.replay_ratio)
