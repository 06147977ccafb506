"""MER (Riemer et al., 2019): replay with Reptile meta-updates within and across batches.

Riemer et al.'s Algorithm 1, for each incoming example: theta_A0 <- theta; then s times
(batches_per_step): draw a batch of k examples, k - 1 from the reservoir buffer and the
incoming one; theta_W0 <- theta; take k sequential SGD steps at rate alpha, one per
example; theta <- theta_W0 + beta (theta_Wk - theta_W0) (within-batch Reptile). After
the s batches theta <- theta_A0 + gamma (theta - theta_A0) (across-batch Reptile); the
example then enters the buffer. The sequential per-example steps are what make Reptile
reward gradient alignment between old and new samples.

For neural fields, where a task is a set of coordinates:
* one test-time step of MER is one incoming "example" in Riemer's sense: the current
  task's batch (the whole task for grids, the step's fresh rays for scenes), m samples;
* each of its s batches holds k = `steps_per_batch` examples of c samples each, and
  each example is one sequential optimiser step: k_r = round(k replay_ratio) examples
  drawn from the buffer (afresh for each batch) and k_c = k - k_r examples that split
  the current batch (shuffled afresh for each batch; c = ceil(m / k_c), the last one
  wrapping round), taken in a random order (replayed examples mixed in);
  steps_per_batch = 0 means sample-level steps, each sample its own example (c = 1,
  k_c = m, k_r = the ER replay count for m): Riemer's algorithm exactly, s (m + n)
  sequential steps per test-time step, affordable only for small tasks;
* while the buffer is empty (the first task) the replayed examples are skipped;
* one rate for every learner's step: `tto_lr` is the rate of one whole test-time step,
  and MER's per-example rate is alpha = tto_lr / (s k beta gamma). To first order (no
  interference between examples) a MER step then moves the params as far as one step
  of ER at tto_lr on the same mixture of current and replayed samples; what MER adds is
  the second-order Reptile term that favours steps on which old and new samples agree.
  Without the rescaling a MER step at alpha = 1e-2, beta = 0.1 made ~10x less progress
  than the other continual learners' steps at the same rate;
* the optimiser state runs on through the sequential steps (with SGD, as in MER, it
  is empty); the buffer takes the task's samples when the task ends (as in ER).
With beta = gamma = 1, one batch and one example (k = 1, no replay), a MER step is one
plain optimiser step at tto_lr on the current batch.
"""
import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError
from mclnf_jax.learners import base, er
from mclnf_jax.learners.setup import Setup


def interpolate(start, end, rate: float):
  """Reptile: start + rate * (end - start), leaf by leaf."""
  return jax.tree_util.tree_map(lambda a, b: a + rate * (b - a), start, end)


def example_step(opt, loss, apply_fn, params, opt_state, ex, ey):
  """One sequential optimiser step on one example (ex, ey): (params, opt_state)."""
  return er.opt_step(opt, lambda p: loss(apply_fn, p, ex, ey), params, opt_state)


def examples(m: int, steps_per_batch: int, replay_ratio: float) -> tuple[int, int, int]:
  """(k_c, k_r, c): current and replayed examples per batch and samples per example,
  for a current batch of m samples."""
  if steps_per_batch == 0:                         # sample level
    return m, er.replay_count(m, replay_ratio), 1
  k_r = int(round(steps_per_batch * replay_ratio))
  k_c = steps_per_batch - k_r
  if k_c < 1:
    raise UserError(f'config.methods.mer.steps_per_batch={steps_per_batch} with '
                    f'replay_ratio={replay_ratio} leaves no step for the current samples: '
                    'raise steps_per_batch or lower replay_ratio')
  return k_c, k_r, -(-m // k_c)


def mer_learner(name: str, s: Setup, *, buffer_fraction: float, replay_ratio: float,
                beta: float, gamma: float, batches_per_step: int,
                steps_per_batch: int) -> base.Learner:
  er.check_replay(name, buffer_fraction, replay_ratio)
  if batches_per_step <= 0 or steps_per_batch < 0:
    raise UserError(f'config.methods.{name}: batches_per_step={batches_per_step} must be '
                    f'positive and steps_per_batch={steps_per_batch} >= 0')
  if not (0 < beta <= 1 and 0 < gamma <= 1):
    raise UserError(f'config.methods.{name}: beta={beta} and gamma={gamma} must be in (0, 1]')
  batches = s.tto_batches
  replayed = er.replay_batch(batches)

  def optimizer(m: int):
    """The per-example optimiser: alpha = tto_lr / (s k beta gamma)."""
    k_c, k_r, _ = examples(m, steps_per_batch, replay_ratio)
    scale = batches_per_step * (k_c + k_r) * beta * gamma
    return base.make_optimizer(s.method.tto_opt, s.method.tto_lr / scale)

  def start(params):
    return {'params': params, 'opt': optimizer(1).init(params),   # the state is lr-free
            'key': jax.random.PRNGKey(er.SEED)}

  def task_fn(state, x, y, steps, task_key):
    m = batches.size or x.shape[0]
    k_c, k_r, c = examples(m, steps_per_batch, replay_ratio)
    opt = optimizer(m)
    buffer = state['buffer']
    is_replay = jnp.arange(k_c + k_r) >= k_c

    def step(carry, bx, by):
      params, opt_state, key, k = carry

      def one_batch(carry, key):
        params, opt_state = carry
        start = params
        shuffle, draw, order = jax.random.split(key, 3)
        rows = jax.random.permutation(shuffle, m)[jnp.arange(k_c * c) % m].reshape(k_c, c)
        ex_x, ex_y = bx[rows], by[rows]                       # [k_c, c, d]
        active = jnp.asarray(False)
        if k_r:
          rx, ry, active = er.sample_replay(buffer, draw, k_r * c, x, y)
          rx, ry = replayed(rx, ry, k)
          ex_x = jnp.concatenate([ex_x, rx.reshape(k_r, c, -1)])   # current, then replay
          ex_y = jnp.concatenate([ex_y, ry.reshape(k_r, c, -1)])

        def example(carry, j):
          params, opt_state = carry
          ex, ey = ex_x[j], ex_y[j]
          moved = example_step(opt, s.loss, s.apply, params, opt_state, ex, ey)
          keep = jnp.logical_or(~is_replay[j], active)        # skip replay while empty
          return er.tree_where(keep, moved, (params, opt_state)), None
        (params, opt_state), _ = jax.lax.scan(
            example, (params, opt_state), jax.random.permutation(order, k_c + k_r))
        return (interpolate(start, params, beta), opt_state), None   # within-batch

      key, sub = jax.random.split(key)
      (end, opt_state), _ = jax.lax.scan(one_batch, (params, opt_state),
                                         jax.random.split(sub, batches_per_step))
      return interpolate(params, end, gamma), opt_state, key, k + 1  # across batches

    params, opt_state, _, _ = base.run_batched(
        step, (state['params'], state['opt'], task_key, jnp.zeros((), jnp.int32)), x, y,
        steps, batches)
    return {**state, 'params': params, 'opt': opt_state}

  return base.Learner(
      name=name, meta_learned=False, resumable=False, init=s.field.init, start=start,
      adapt=er.with_buffer(task_fn, buffer_fraction),
      predict=lambda state, x: s.apply(state['params'], x))


def make(setup: Setup) -> base.Learner:
  """The learner with the settings in config.methods.mer."""
  m = setup.method
  return mer_learner('mer', setup, buffer_fraction=m.buffer_fraction,
                     replay_ratio=m.replay_ratio, beta=m.beta, gamma=m.gamma,
                     batches_per_step=m.batches_per_step, steps_per_batch=m.steps_per_batch)
