"""Single-network learners on a stream: one learner state, fed one task at a time.

CL, EWC, MAML+CL, OML (and the offline OL, MOL, which then fine-tune on each new task)
keep everything they carry from task to task in their state, so `adapt` on a one-task
episode, chained, is their sequential adaptation: a stream of T tasks gives what the
batch evaluation gives on the episode of those T tasks. Learners whose `adapt` starts
each episode afresh (a different state comes out than went in) cannot be chained and
are refused; ER's replay buffer is kept across tasks here (`Replay`).
"""
import collections
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax.errors import UserError
from mclnf_jax.learners import er
from mclnf_jax.learners.base import Learner
from mclnf_jax.learners.setup import Setup
from mclnf_jax.stream.experts import counted, one_task
from mclnf_jax.types import Episode


class Sequential:
  """A single-network learner's state, adapted task after task."""

  def __init__(self, learner: Learner, meta: Any, traces: collections.Counter):
    self.learner = learner
    self.traces = traces
    self.state = jax.tree.map(jnp.array, learner.start(meta))     # a copy: meta stays put
    self._adapt = jax.jit(counted(traces, 'fit', self.adapt_one))
    self._predict = jax.jit(counted(traces, 'query', learner.predict))
    self._checked = False

  def adapt_one(self, state, x, y, steps):
    return self.learner.adapt(state, one_task(x, y), steps)

  def prepare(self, x_shape: tuple, y_shape: tuple) -> None:
    """Makes the state ready for tasks of these shapes (nothing to do here)."""
    del x_shape, y_shape

  def observe(self, x: jax.Array, y: jax.Array, cell: int, steps: jax.Array) -> None:
    del cell
    if not self._checked:
      self._check_chains(x, y, steps)
    self.state = self._adapt(self.state, x, y, steps)

  def _check_chains(self, x, y, steps) -> None:
    after = jax.eval_shape(self.adapt_one, self.state, x, y, steps)
    shape = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
    if jax.tree.structure(after) != jax.tree.structure(self.state) \
        or shape(after) != shape(self.state):
      raise UserError(f'learner {self.learner.name} cannot learn a stream: its adapt starts '
                      'every episode afresh; stream cl, er, ewc, maml_cl, oml or a modular one')
    self._checked = True

  def query(self, x: jax.Array) -> jax.Array:
    return self._predict(self.state, x)

  def parts(self) -> tuple[Callable, Any]:
    """(predict(state, x), state): the prediction as a pure function and its state."""
    return self.learner.predict, self.state

  def state_bytes(self) -> int:
    return sum(p.nbytes for p in jax.tree.leaves(self.state))

  def tree(self) -> dict:
    """The state's leaves by position (optimiser states are named tuples, which a
    checkpoint gives back as plain containers): `restore` puts them back in place."""
    return {'leaves': {str(i): a for i, a in enumerate(jax.tree.leaves(self.state))}}

  def restore(self, tree: dict) -> None:
    stored = tree['leaves']
    leaves = [jnp.asarray(stored[str(i)]) for i in range(len(stored))]
    structure = jax.tree.structure(self.state)
    if structure.num_leaves != len(leaves):
      raise UserError(f'the saved stream holds {len(leaves)} arrays where {self.learner.name} '
                      f'has {structure.num_leaves}: it was saved by another version')
    self.state = jax.tree.unflatten(structure, leaves)


class Replay(Sequential):
  """ER on a stream: one reservoir buffer kept across all tasks.

  `learners.er`'s `adapt` starts a fresh buffer per episode (an episode is one signal);
  here the buffer stays in the state and each task runs ER's own per-task step
  (`er.with_previous`), so a stream and ER's batch adaptation of the same tasks agree (a
  test checks it). The buffer holds `buffer_fraction` of the samples of the stream's
  whole layout (num_cells tasks of m samples), as ER's holds of a signal.
  """

  def __init__(self, learner: Learner, meta: Any, traces: collections.Counter,
               setup: Setup, num_cells: int):
    self.setup = setup
    self.num_cells = num_cells
    m = setup.method
    er.check_replay('er', m.buffer_fraction, m.replay_ratio)
    self._step = er.with_previous(er.replay_task(setup, m.replay_ratio))
    super().__init__(learner, meta, traces)
    self._checked = True

  def adapt_one(self, state, x, y, steps):
    return self._step(state, x, y, steps)

  def prepare(self, x_shape: tuple, y_shape: tuple) -> None:
    """The empty buffer, once the shapes of a task are known (the first task)."""
    if 'buffer' in self.state:
      return
    layout = jax.ShapeDtypeStruct((self.num_cells,) + tuple(x_shape), jnp.float32)
    size = er.buffer_slots(self.setup.method.buffer_fraction,
                           Episode(layout, None, None, None))
    self.state = er.add_buffer(self.state, size, jnp.zeros(x_shape), jnp.zeros(y_shape))

  def observe(self, x, y, cell, steps) -> None:
    self.prepare(x.shape, y.shape)
    super().observe(x, y, cell, steps)


def shapes_of(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """[2, 2] int32: (rows, width) of a task's x and y, saved so `load` can `prepare`."""
  return np.asarray([x.shape, y.shape], np.int32)
