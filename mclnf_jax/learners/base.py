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
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mclnf_jax.errors import UserError
from mclnf_jax.types import ApplyFn, Episode, LossFn, Params, State


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


def run_steps(step_fn: Callable[[Any], Any], carry: Any, steps: Any) -> Any:
  """Applies step_fn `steps` times.

  A static count becomes a `lax.scan` whose body is rematerialised (`jax.checkpoint`),
  so reverse-mode memory holds one carry per step instead of every activation.
  """
  if isinstance(steps, int):
    body = jax.checkpoint(lambda c, _: (step_fn(c), None))
    return jax.lax.scan(body, carry, None, length=steps)[0]
  return jax.lax.fori_loop(0, steps, lambda _, c: step_fn(c), carry)


def fit(loss: LossFn, apply_fn: ApplyFn, optimizer: optax.GradientTransformation,
        params: Params, opt_state: Any, x: jax.Array, y: jax.Array, steps: Any,
        *, first_order: bool = False) -> tuple[Params, Any]:
  """`steps` full-batch optimiser steps of `loss` on (x, y).

  first_order=True stops gradients through the inner gradients (FOMAML): the
  meta-gradient then treats each inner update as a constant shift.
  """
  def step(carry):
    params, opt_state = carry
    grads = jax.grad(lambda p: loss(apply_fn, p, x, y))(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return run_steps(step, (params, opt_state), steps)


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


def mean_task_loss(loss: LossFn, apply_fn: ApplyFn, params: Params, episode: Episode):
  """(1/t) sum_i L_i with one set of params for every task (eq. 1)."""
  per_task = jax.vmap(lambda x, y: loss(apply_fn, params, x, y))(
      episode.context_x, episode.context_y)
  return per_task.mean()
