"""The learner interface and the inner loop all learners share.

A learner is a bundle of pure functions (like `optax.GradientTransformation`):

  init(key)                     -> meta_params   the starting point of every signal
  start(meta_params)            -> state         test-time state at step 0
  adapt(state, episode, steps)  -> state         `steps` optimisation steps on each task,
                                                 task after task (offline learners: on the
                                                 whole signal)
  predict(state, x)             -> y             predictions for query inputs
  meta_loss(meta_params, episode) -> (loss, aux) eq. (1)/(2) of the paper; meta-learned only

`steps` may be a Python int (a differentiable `lax.scan`, used by meta-training) or a
traced integer (a `fori_loop`, used by evaluation so one compile serves every step count).

Batches: a task's context set is either fitted whole at every step (grids: `FULL`) or
is a pool from which step k fits the k-th batch, `draw(pool_x, pool_y, k, size)`
(scenes: fresh rays every step). The draw is a pure function of the pool (fixed per
seed, signal and task) and k, so a rerun, a scan and a fori_loop all fit the same
batches; resumable learners keep k in their state so chained calls continue the
sequence.
"""
import contextlib
import contextvars
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mclnf_jax.errors import UserError
from mclnf_jax.types import ApplyFn, DrawFn, Episode, LossFn, Params, State


class Learner(NamedTuple):
  name: str
  meta_learned: bool
  resumable: bool    # adapt(adapt(s, e, a), e, b) == adapt(s, e, a + b): evaluation may chain
  init: Callable[[jax.Array], Params]
  start: Callable[[Params], State]
  adapt: Callable[[State, Episode, Any], State]
  predict: Callable[[State, jax.Array], jax.Array]
  meta_loss: Optional[Callable[[Params, Episode], tuple[jax.Array, dict]]] = None


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  """Inner / test-time optimisers by name."""
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'adam':
    return optax.adam(lr)
  raise UserError(f'unknown optimizer {name!r}: use sgd or adam')


class LearnedRates(NamedTuple):
  rates: Any       # like the params: each leaf's learning rates, broadcast to its shape


def learned_sgd(rates: Any = None) -> optax.GradientTransformation:
  """SGD with learned per-tensor or per-parameter rates (Meta-SGD, Li et al., 2017).

  The rates live in the optimiser state, so `adapt` needs no meta-params: `init` (which
  needs `rates`, a tree of layers like the params, of scalars or arrays like the leaves)
  broadcasts them into the state, and `update` reads them from there. `init` takes the
  layers it is given (OML adapts only its prediction layers).
  """
  def init(params):
    if rates is None:
      raise ValueError('learned_sgd(rates).init needs the rates')
    picked = {k: rates[k] for k in params}
    return LearnedRates(jax.tree_util.tree_map(
        lambda r, p: jnp.broadcast_to(r, p.shape).astype(p.dtype), picked, params))

  def update(grads, state, params=None):
    del params
    return jax.tree_util.tree_map(lambda g, r: -r * g, grads, state.rates), state
  return optax.GradientTransformation(init, update)


class Batches(NamedTuple):
  """How an inner loop picks each step's data from a task's context set."""
  size: int = 0                    # rows per step; 0: the whole context set (full batch)
  draw: Optional[DrawFn] = None    # draw(pool_x, pool_y, index, size) -> (x, y)


FULL = Batches()
QUERY = -1    # the draw index of the meta-loss's query set (the pool's last rows)


def batch_at(batches: Batches, x: jax.Array, y: jax.Array, index: Any):
  """The index-th batch of a task's context set (x, y); the whole set with full batches."""
  if not batches.size:
    return x, y
  return batches.draw(x, y, index, batches.size)


# What the backward pass of a differentiated inner loop keeps of each step (`meta.remat`):
#   step  nothing but the carry: each step is recomputed in the backward pass (least memory)
#   dots  the matmul outputs too: only the elementwise work (sines, ...) is recomputed
#   none  every activation (no recomputation; memory grows with the steps' activations)
REMAT_POLICIES = ('step', 'dots', 'none')
_remat = contextvars.ContextVar('remat', default='step')


def _checked(policy: str) -> str:
  if policy not in REMAT_POLICIES:
    raise UserError(f'meta.remat={policy!r}: use one of {", ".join(REMAT_POLICIES)}')
  return policy


@contextlib.contextmanager
def remat(policy: str):
  """Within this context, inner loops traced with a static step count use `policy`."""
  token = _remat.set(_checked(policy))
  try:
    yield
  finally:
    _remat.reset(token)


def with_remat(policy: str, fn: Callable[..., Any]) -> Callable[..., Any]:
  """fn traced under `remat(policy)`: how a meta-loss fixes its inner loops' policy."""
  _checked(policy)        # now, not at the first trace

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with remat(policy):
      return fn(*args, **kwargs)
  return wrapped


def run_steps(step_fn: Callable[[Any], Any], carry: Any, steps: Any) -> Any:
  """Applies step_fn `steps` times.

  A static count becomes a `lax.scan` whose body is rematerialised (`jax.checkpoint`)
  as the `remat` policy in force says (default 'step': reverse-mode memory holds one
  carry per step instead of every activation); a traced count a `fori_loop`.
  """
  if isinstance(steps, int):
    body = lambda c, _: (step_fn(c), None)
    policy = _remat.get()
    if policy == 'step':
      body = jax.checkpoint(body)
    elif policy == 'dots':
      body = jax.checkpoint(body, policy=jax.checkpoint_policies.checkpoint_dots)
    return jax.lax.scan(body, carry, None, length=steps)[0]
  return jax.lax.fori_loop(0, steps, lambda _, c: step_fn(c), carry)


def run_batched(step_fn: Callable[[Any, jax.Array, jax.Array], Any], carry: Any,
                x: jax.Array, y: jax.Array, steps: Any, batches: Batches = FULL,
                start: Any = 0) -> Any:
  """Applies step_fn(carry, x_k, y_k) for k = start .. start + steps - 1, (x_k, y_k) the
  k-th batch of (x, y) (with full batches, (x, y) itself at every step)."""
  if not batches.size:
    return run_steps(lambda c: step_fn(c, x, y), carry, steps)

  def step(c):
    inner, k = c
    bx, by = batches.draw(x, y, k, batches.size)
    return step_fn(inner, bx, by), k + 1
  return run_steps(step, (carry, jnp.asarray(start, jnp.int32)), steps)[0]


def fit(loss: LossFn, apply_fn: ApplyFn, optimizer: optax.GradientTransformation,
        params: Params, opt_state: Any, x: jax.Array, y: jax.Array, steps: Any,
        *, first_order: bool = False, batches: Batches = FULL,
        start: Any = 0) -> tuple[Params, Any]:
  """`steps` optimiser steps of `loss` on (x, y): on all of it at every step (full
  batch, the default), or on batches start, start + 1, ... drawn from it (`batches`).

  first_order=True stops gradients through the inner gradients (FOMAML): the
  meta-gradient then treats each inner update as a constant shift.
  """
  def step(carry, x, y):
    params, opt_state = carry
    grads = jax.grad(lambda p: loss(apply_fn, p, x, y))(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return run_batched(step, (params, opt_state), x, y, steps, batches, start)


def over_tasks(task_fn: Callable[[State, jax.Array, jax.Array, jax.Array], State],
               state: State, episode: Episode) -> State:
  """Runs task_fn(state, x_t, y_t, t) for t = 0..T-1 in order (the continual setting)."""
  num_tasks = episode.context_x.shape[0]
  def body(state, task):
    x, y, t = task
    return task_fn(state, x, y, t), None
  tasks = (episode.context_x, episode.context_y, jnp.arange(num_tasks))
  return jax.lax.scan(body, state, tasks)[0]


def whole_signal(episode: Episode) -> tuple[jax.Array, jax.Array]:
  """All context points at once, for offline learners: [T*m, d]."""
  x, y = episode.context_x, episode.context_y
  return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])


def whole_signal_batches(episode: Episode, batches: Batches):
  """(x, y, batches) for offline learners: with full batches the whole signal at every
  step ([T*m, d]); else the task pools [T, M, d] and a draw of `size` rows of every task
  per step (batch k of each task, [T*size, d]), as many rows as T tasks' steps fit."""
  if not batches.size:
    return (*whole_signal(episode), batches)
  each = jax.vmap(batches.draw, in_axes=(0, 0, None, None))
  flat = lambda a: a.reshape(-1, a.shape[-1])

  def draw(px, py, index, size):
    bx, by = each(px, py, index, size)
    return flat(bx), flat(by)
  return episode.context_x, episode.context_y, Batches(batches.size, draw)


def query_sets(episode: Episode, size: int, draw: Optional[DrawFn],
               fitted: int = 0) -> tuple[jax.Array, jax.Array]:
  """Each task's meta-loss query set [T, q, d]: the task's whole context set with full
  batches (grids), else `size` rows drawn apart from the inner loop's (draw index
  `QUERY`, the last rows of each pool). fitted: rows the inner loop fits per task
  (steps x batch); a pool too small to keep the two apart is refused."""
  if not size:
    return episode.context_x, episode.context_y
  pool = episode.context_x.shape[1]
  if fitted + size > pool:
    raise UserError(f'a pool of {pool} rows per task cannot hold the inner loop\'s '
                    f'{fitted} rows and {size} separate query rows: raise scene.pool_rays '
                    'or lower rays_per_task, meta.inner_steps or scene.query_rays_per_task')
  return jax.vmap(draw, in_axes=(0, 0, None, None))(
      episode.context_x, episode.context_y, jnp.int32(QUERY), size)


def mean_task_loss(loss: LossFn, apply_fn: ApplyFn, params: Params, episode: Episode):
  """(1/t) sum_i L_i with one set of params for every task (eq. 1), on each task's
  context set (pass an episode holding the query sets for the meta-loss)."""
  per_task = jax.vmap(lambda x, y: loss(apply_fn, params, x, y))(
      episode.context_x, episode.context_y)
  return per_task.mean()
