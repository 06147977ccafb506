"""Meta-training state on disk: one orbax checkpoint folder per learner.

The whole meta-state pytree (`meta.init_state`) is saved synchronously by orbax's
`CheckpointManager` (atomic: a killed save leaves an orbax temporary folder the manager
ignores) and restored into a template built with `jax.eval_shape`, so nothing is
initialised just to be overwritten.

Where meta-training starts from, in order:
  1. the learner's own folder in the workdir: resume its latest step (exactly);
  2. else `init_from`, another run's learner folder (`--config.meta.init_from`): its best
     meta-parameters become step 0's parameters, with a fresh outer optimiser;
  3. else scratch: `init_fn()`.
"""
import os
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from mclnf_jax.errors import UserError

MetaState = dict[str, Any]


def manager(folder: str) -> ocp.CheckpointManager:
  """The checkpoint manager of a learner folder: the latest whole meta-state only."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(folder, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))


def latest_step(folder: str) -> Optional[int]:
  if not os.path.isdir(os.path.join(folder, 'checkpoints')):
    return None
  with manager(folder) as m:
    return m.latest_step()


def restore(folder: str, init_fn: Callable[[], MetaState]) -> tuple[int, MetaState]:
  """(step, state) of the latest checkpoint in `folder`; a one-line error if there is none."""
  step = latest_step(folder)
  if step is None:
    raise UserError(f'no meta-trained checkpoint in {folder}: run with --mode=train '
                    '(or train_and_eval) first')
  with manager(folder) as m:
    state = m.restore(step, args=ocp.args.StandardRestore(jax.eval_shape(init_fn)))
  return step, state


def resume(folder: str, init_fn: Callable[[], MetaState], init_from: str = '') -> MetaState:
  """The state meta-training starts from (the order in the module docstring)."""
  if latest_step(folder) is not None:                                   # 1. own folder
    step, state = restore(folder, init_fn)
    logging.info('%s: resumed meta-training at step %d', folder, step)
    return state
  state = init_fn()
  if init_from:                                                         # 2. another run
    source = os.path.join(os.path.expanduser(init_from), os.path.basename(folder))
    if latest_step(source) is None:
      raise UserError(f'config.meta.init_from={init_from}: no checkpoint in {source}; name '
                      'the workdir of a meta-trained run of this learner')
    step, other = restore(source, init_fn)
    logging.info('%s: starting from the best meta-parameters of %s (step %d)', folder,
                 source, step)
    params = other['best_params']
    return {**state, 'params': params, 'best_params': jax.tree_util.tree_map(
        lambda x: x.copy(), params)}
  return state                                                          # 3. scratch


def save(folder: str, state: MetaState) -> None:
  with manager(folder) as m:
    m.save(int(state['step']), args=ocp.args.StandardSave(state))
