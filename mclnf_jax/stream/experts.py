"""The modular learners on a stream: a growing buffer of experts, one per cell.

Slot 0 of the buffer holds the shared (meta-learned) init, and every cell of the layout
routes there until a task of it arrives: an unseen cell is answered by the init's
prediction, the field a new expert would start from. A task of a new cell takes the next
free slot, is fitted there from the init (the modular learner's own `start` and `adapt`,
built for one task, so a stream gives what the batch evaluation gives), and the cell
table points the cell to it. A cell seen again is fitted further from its own expert,
with a fresh optimiser state.

The buffer is preallocated, [capacity, ...] per leaf, and doubles when full: the fit of a
task never sees the buffer (compiled once per task shape), and only the small write,
read and query functions, which do, recompile on a doubling (O(log n) compiles in all).
The write donates the buffer, so a task costs the same at any fill.

Memory cap (`max_experts`): when a new cell arrives and `max_experts` experts of single
cells are held, the least recently fitted one is folded into a shared expert (the first
one folded becomes it), by distillation or parameter averaging (stream/merge.py); its
cells then route to the shared expert and its slot is reused.
"""
import collections
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax.errors import UserError
from mclnf_jax.fields import Field, experts
from mclnf_jax.learners.base import Learner
from mclnf_jax.stream.merge import MERGES, Anchors, teacher
from mclnf_jax.types import Episode

INIT = 0      # the slot of the shared init, the answer for unseen cells


def counted(traces: collections.Counter, name: str, fn: Callable) -> Callable:
  """fn, counting its traces in traces[name] (one trace per compile)."""
  def traced(*args):
    traces[name] += 1
    return fn(*args)
  return traced


def one_task(x: jax.Array, y: jax.Array) -> Episode:
  """A one-task episode of context (x [m, d_x], y [m, d_y]) (its query set unused)."""
  return Episode(context_x=x[None], context_y=y[None], query_x=x, query_y=y)


class ExpertBuffer:
  """Experts of a modular learner in a doubling buffer, routed through a cell table.

  learner: the modular learner built for one task (its `start`/`adapt` fit one expert);
  field, predictor, route: the expert network, the modality's predictor and its routing
  of field inputs to cells ([N, in_dim] -> [N, num_cells] one-hot).
  """

  def __init__(self, learner: Learner, meta: Any, field: Field,
               predictor: Callable, route: Callable, num_cells: int, *,
               capacity: int = 8, max_experts: int = 0, merge: str = 'distill',
               merge_steps: int = 1, traces=None):
    if merge not in MERGES:
      raise UserError(f'merge={merge!r}: use one of {", ".join(MERGES)}')
    self.meta = meta
    self.num_cells = num_cells
    self.max_experts, self.merge, self.merge_steps = max_experts, merge, merge_steps
    self.anchors = Anchors(num_cells, field.in_dim) if max_experts and merge == 'distill' \
        else None
    self.traces = collections.Counter() if traces is None else traces
    self._fit = jax.jit(counted(self.traces, 'fit', _fitter(learner)))
    self._write = jax.jit(counted(self.traces, 'write', _write), donate_argnums=0)
    self._read = jax.jit(counted(self.traces, 'read', lambda b, slot: jax.tree.map(
        lambda p: p[slot], b)))
    self._average = jax.jit(counted(self.traces, 'merge', _average), donate_argnums=0)
    self._double = jax.jit(counted(self.traces, 'double', _double))
    self._teach = jax.jit(counted(self.traces, 'teach', teacher(predictor(field.apply))))
    self._query_fn = _querier(field, predictor, route)
    self._query = jax.jit(counted(self.traces, 'query', self._query_fn))
    self.init = jax.jit(lambda m: jax.tree.map(lambda p: p[0], learner.start(m)['params']))(
        meta)
    self.buffer = jax.tree.map(
        lambda p: jnp.broadcast_to(p, (max(2, capacity),) + p.shape).copy(), self.init)
    self.table = np.zeros(num_cells, np.int32)     # cell -> slot (INIT: unseen)
    self.used = 1                                  # slots ever handed out (slot 0: init)
    self.free: list[int] = []                      # slots freed by merges
    self.recent = collections.OrderedDict()        # own slot -> None, least recent first
    self.shared, self.shared_weight = -1, 0        # the merged expert's slot, experts in it
    self._table_device = None

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.buffer)[0].shape[0]

  @property
  def num_experts(self) -> int:
    """Experts held: one per unmerged cell's slot, plus the shared one if any."""
    return len(self.recent) + (self.shared >= 0)

  def observe(self, x: jax.Array, y: jax.Array, cell: int, steps: jax.Array) -> int:
    """Fits cell `cell` on context (x, y) for `steps` steps; returns its slot."""
    slot = int(self.table[cell])
    if slot != INIT and slot != self.shared:         # seen: continue its own expert
      start = self._read(self.buffer, jnp.int32(slot))
      self.recent.move_to_end(slot)
    else:
      if self.max_experts and len(self.recent) >= self.max_experts:
        self.merge_oldest()
      slot, start = self._allocate(), self.init
      self.recent[slot] = None
    params = self._fit(self.meta, start, x, y, steps)
    self.buffer = self._write(self.buffer, jnp.int32(slot), params)
    self.table[cell] = slot
    if self.anchors is not None:
      self.anchors.keep(cell, np.asarray(x))
    self._table_device = None
    return slot

  def _allocate(self) -> int:
    if self.free:
      return self.free.pop()
    if self.used == self.capacity:
      self.buffer = self._double(self.buffer)
    self.used += 1
    return self.used - 1

  def merge_oldest(self) -> None:
    """Folds the least recently fitted expert into the shared expert (see module doc)."""
    oldest, _ = self.recent.popitem(last=False)
    if self.shared < 0:                      # the first merged expert becomes the shared one
      self.shared, self.shared_weight = oldest, 1
      return
    shared, old = jnp.int32(self.shared), jnp.int32(oldest)
    if self.anchors is None:
      self.buffer = self._average(self.buffer, shared, old, jnp.float32(self.shared_weight))
    else:
      self._distill(oldest)
    self.shared_weight += 1
    self.table[self.table == oldest] = self.shared
    self.free.append(oldest)
    self._table_device = None

  def _distill(self, oldest: int) -> None:
    """Averages the oldest expert into the shared one, then refits that on both experts'
    predictions (taken before) at anchor inputs of the cells they hold (merge.py)."""
    shared, old = jnp.int32(self.shared), jnp.int32(oldest)
    cells = np.flatnonzero((self.table == oldest) | (self.table == self.shared))
    x, picked = self.anchors.draw(cells, self.shared_weight)
    x, is_oldest = jnp.asarray(x), jnp.asarray(self.table[picked] == oldest)
    y = self._teach(self.buffer, old, shared, x, is_oldest)
    self.buffer = self._average(self.buffer, shared, old, jnp.float32(self.shared_weight))
    start = self._read(self.buffer, shared)
    params = self._fit(self.meta, start, x, y, jnp.int32(self.merge_steps))
    self.buffer = self._write(self.buffer, shared, params)

  def query(self, x: jax.Array) -> jax.Array:
    if self._table_device is None:
      self._table_device = jnp.asarray(self.table)
    return self._query(self.buffer, self._table_device, x)

  def expert_bytes(self) -> int:
    """Bytes of one expert's parameters."""
    return sum(p.nbytes for p in jax.tree.leaves(self.init))

  def parts(self) -> tuple[Callable, Any]:
    """(predict(state, x), state): the prediction as a pure function and its state."""
    if self._table_device is None:
      self._table_device = jnp.asarray(self.table)
    return (lambda state, x: self._query_fn(*state, x)), (self.buffer, self._table_device)

  def prepare(self, x_shape: tuple, y_shape: tuple) -> None:
    """Nothing depends on the task shapes before a task arrives."""
    del x_shape, y_shape

  # ------------------------------------------------------------------ saving ---

  def tree(self) -> dict:
    """Everything the buffer holds, as one pytree of arrays (orbax saves no empty
    array, so the recency order and free slots are one rank per slot: the k-th least
    recently fitted own expert has rank k, a freed slot -1, others -2)."""
    rank = np.full(self.capacity, -2, np.int32)
    rank[self.free] = -1
    rank[list(self.recent)] = np.arange(len(self.recent), dtype=np.int32)
    return {'init': self.init, 'buffer': self.buffer, 'table': self.table,
            'used': np.int32(self.used), 'rank': rank, 'shared': np.int32(self.shared),
            'shared_weight': np.int32(self.shared_weight),
            'max_experts': np.int32(self.max_experts),
            'merge': np.int32(MERGES.index(self.merge)),
            'merge_steps': np.int32(self.merge_steps),
            **({'anchors': self.anchors.x} if self.anchors is not None else {})}

  def restore(self, tree: dict) -> None:
    self.init = jax.tree.map(jnp.asarray, tree['init'])
    self.buffer = jax.tree.map(jnp.asarray, tree['buffer'])
    self.table = np.asarray(tree['table'], np.int32).copy()
    self.used = int(tree['used'])
    rank = np.asarray(tree['rank'])
    self.free = [int(s) for s in np.flatnonzero(rank == -1)]
    own = np.flatnonzero(rank >= 0)
    self.recent = collections.OrderedDict((int(s), None) for s in own[np.argsort(rank[own])])
    self.shared, self.shared_weight = int(tree['shared']), int(tree['shared_weight'])
    if self.anchors is not None:
      self.anchors.x = np.asarray(tree['anchors'], np.float32).copy()
    self._table_device = None


def _fitter(learner: Learner):
  """fit(meta, start [...], x, y, steps) -> the expert after `steps` steps of the
  learner's test-time optimisation on (x, y), started at `start` with a fresh optimiser
  state (the learner's `start` of `meta`: Meta-SGD rates included)."""
  def fit(meta, start, x, y, steps):
    state = learner.start(meta)
    state = {**state, 'params': jax.tree.map(lambda p: p[None], start)}
    state = learner.adapt(state, one_task(x, y), steps)
    return jax.tree.map(lambda p: p[0], state['params'])
  return fit


def _write(buffer, slot, params):
  return jax.tree.map(lambda b, p: b.at[slot].set(p.astype(b.dtype)), buffer, params)


def _double(buffer):
  """The buffer at twice its capacity, the new slots holding the init (slot INIT)."""
  return jax.tree.map(lambda b: jnp.concatenate([b, jnp.broadcast_to(b[INIT], b.shape)]),
                      buffer)


def _average(buffer, shared, other, weight):
  """Slot `shared` <- (weight * shared + other) / (weight + 1)."""
  return jax.tree.map(
      lambda b: b.at[shared].set((weight * b[shared] + b[other]) / (weight + 1)), buffer)


class SlotRouter:
  """G(x) over buffer slots: the modality's route to cells [N, num_cells] mapped through
  the cell table to [N, capacity]. Hard routes (one-hot) stay one-hot; a route that
  blends at most k cells (`experts_per_point`, e.g. scenes with `blend_overlap`) keeps
  its k weights, each on its cell's slot, and declares the same k to `routed_apply`."""

  def __init__(self, route: Callable, table: jax.Array, capacity: int):
    self.route, self.table, self.capacity = route, table, capacity
    self.experts_per_point = int(getattr(route, 'experts_per_point', 1))

  def __call__(self, points: jax.Array) -> jax.Array:
    weights = self.route(points)                                   # [N, num_cells]
    if self.experts_per_point == 1:
      return jax.nn.one_hot(self.table[jnp.argmax(weights, axis=-1)], self.capacity)
    top, cells = jax.lax.top_k(weights, self.experts_per_point)   # [N, k] each
    rows = jnp.arange(points.shape[0])[:, None]
    return jnp.zeros((points.shape[0], self.capacity), weights.dtype).at[
        rows, self.table[cells]].add(top)


def _querier(field: Field, predictor: Callable, route: Callable):
  """query(buffer, table, x): the modality's prediction (volume rendering for scenes)
  from the routed experts: each field input goes to the expert of its cell
  (`table[cell]`), evaluated in expert-sorted blocks (`fields.experts.routed_apply`)."""
  def query(buffer, table, x):
    capacity = jax.tree.leaves(buffer)[0].shape[0]
    router = SlotRouter(route, table, capacity)
    return predictor(experts.routed_apply(field, router))(buffer, x)
  return query
