"""Meta-training state on disk: one orbax checkpoint folder per learner.

The whole meta-state pytree (`meta.init_state`) is saved synchronously by orbax's
`CheckpointManager` (atomic: a killed save leaves an orbax temporary folder the manager
ignores) and restored into a template built with `jax.eval_shape` of the same builder
that makes a fresh state, so nothing is initialised just to be overwritten. Over a device
mesh that builder is `jit(init, out_shardings=replicated)` (`meta.state_builder`): every
process saves its part into one directory, and the template's shardings place the
restored state, whatever number of processes or devices wrote it (2 -> 1 is tested).

Where meta-training starts from, in order:
  1. the learner's own folder in the workdir: resume its latest step (exactly);
  2. else `init_from`, another run's learner folder (`--config.meta.init_from`): its best
     meta-parameters become step 0's parameters, with a fresh outer optimiser;
  3. else scratch: `init_fn()`.

A checkpoint that cannot be restored (a file of it truncated or deleted, or a meta-state
of another structure: another learner or config, or an earlier version of the package,
whose outer optimiser state had no skip counter) is a one-line `UserError` naming the
folder and the fix (move it aside or use another --workdir), never a silent restart.
"""
import os
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from mclnf_jax.errors import UserError

MetaState = dict[str, Any]
# Files of an orbax checkpoint step whose loss the restore error may not name (a template
# with shardings, as over a mesh, fails on the tree before reading them).
METADATA = ('_CHECKPOINT_METADATA', os.path.join('default', '_METADATA'))


def manager_at(path: str) -> ocp.CheckpointManager:
  """A synchronous orbax manager of `path` that keeps the latest step only (atomic: a
  killed save leaves the previous step)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.expanduser(path)),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))


def manager(folder: str) -> ocp.CheckpointManager:
  """The checkpoint manager of a learner folder: the latest whole meta-state only."""
  return manager_at(os.path.join(folder, 'checkpoints'))


def _fix(folder: str) -> str:
  return (f'move {folder} aside (its learner then starts afresh) or use another --workdir')


def _first_line(error: BaseException, limit: int = 120) -> str:
  lines = str(error).strip().splitlines() or [type(error).__name__]
  line = lines[0]
  return line if len(line) <= limit else line[:limit] + '...'


def latest_step(folder: str) -> Optional[int]:
  path = os.path.join(folder, 'checkpoints')
  if not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    raise UserError(f'{path} is not a folder of orbax checkpoints; {_fix(folder)}')
  try:
    with manager(folder) as m:
      return m.latest_step()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'cannot read the checkpoints in {path} ({type(e).__name__}: '
                    f'{_first_line(e)}); {_fix(folder)}') from None


def template(init_fn: Callable[[], MetaState]) -> Any:
  """The restore target: shapes, dtypes and shardings of init_fn's state, without running
  it. A leaf without a sharding (init_fn not jitted over a mesh) is placed on this
  process's first device, so a checkpoint of any mesh or process count restores."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(
      lambda s: s if getattr(s, 'sharding', None) is not None
      else jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=local), jax.eval_shape(init_fn))


def restore(folder: str, init_fn: Callable[[], MetaState]) -> tuple[int, MetaState]:
  """(step, state) of the latest checkpoint in `folder`; a one-line error if there is none
  or it cannot be read."""
  step = latest_step(folder)
  if step is None:
    raise UserError(f'no meta-trained checkpoint in {folder}: run with --mode=train '
                    '(or train_and_eval) first')
  path = os.path.join(os.path.abspath(folder), 'checkpoints', str(step))
  try:
    with manager(folder) as m:
      state = m.restore(step, args=ocp.args.StandardRestore(template(init_fn)))
  except Exception as e:  # pylint: disable=broad-except
    text = str(e)
    # (the first line without tensorstore's spec, which names every dtype it casts to)
    head = text.split('\n')[0].split('[tensorstore_spec')[0].lower()
    if 'Structure mismatch' in text or 'not compatible with the stored shape' in text \
        or 'tree structures do not match' in text or 'dtype' in head:
      what = ('holds a meta-state of another structure (another learner or config, or '
              'an earlier version of mclnf_jax)')
    else:
      what = 'is truncated or corrupt'
    missing = [name for name in METADATA if not os.path.exists(os.path.join(path, name))]
    cause = f'{missing[0]} is missing' if missing else f'{type(e).__name__}: {_first_line(e)}'
    raise UserError(f'the checkpoint {path} {what} ({cause}); {_fix(folder)}') from None
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
