"""Devices and hosts: the mesh of `config.mesh`, where each array lives, and who writes.

The maths is written for one global batch (meta.py, evaluate.py); this module only says
how that batch and the state are laid out over a named device mesh, and jit's in/out
shardings do the rest (GSPMD inserts the collectives):

  axis 'data'    the meta-batch [B, ...] and the eval batch [S, ...] are split over it
                 (B / data signals per device); the meta-gradient is a sum over it.
  axis 'expert'  (option, `mesh.expert` > 1) the task axis of a modular learner's context
                 arrays [B, T, ...] is split over it, so each device holds T / expert
                 experts of every signal; other learners are replicated along it.
  replicated     the meta-state (meta-params, outer optimiser, step, best-so-far): every
                 device holds a copy and applies the same update.

Several hosts run one process each (JAX's multi-controller runtime): `initialize` joins
them, before any JAX operation, by `jax.distributed.initialize`, which detects SLURM
(`srun`), Open MPI, TPU VMs and Kubernetes by itself; anything else names a coordinator.
Each process then builds only its own rows of a meta-batch (`process_rows`,
`global_batch`). Files are written by process 0 (`is_main`) while the others wait at a
`barrier`; orbax saves and restores from every process into one directory.
"""
import re
from typing import Any, Callable, Optional, Sequence, TypeVar

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mclnf_jax.errors import UserError

DATA, EXPERT = 'data', 'expert'
T = TypeVar('T')


def initialize(coordinator_address: str = '', num_processes: Optional[int] = None,
               process_id: Optional[int] = None, timeout_s: int = 300) -> None:
  """Joins this process to a multi-process run (`jax.distributed.initialize`).

  Unset arguments are detected by JAX from the environment: SLURM under `srun`
  (SLURM_PROCID, SLURM_NTASKS, SLURM_STEP_NODELIST, ...; the port is
  $JAX_COORDINATOR_PORT or one derived from SLURM_JOB_ID), Open MPI's `mpirun`, TPU VMs,
  Kubernetes, or $JAX_COORDINATOR_ADDRESS. Must run before any JAX operation.
  """
  try:
    jax.distributed.initialize(coordinator_address or None, num_processes, process_id,
                               initialization_timeout=timeout_s)
  except ValueError as e:
    raise UserError(
        f'--distributed found no cluster to join ({str(e).splitlines()[0]}): run under srun, '
        'mpirun or on a TPU VM, or give --coordinator_address=HOST:PORT --num_processes=N '
        '--process_id=I') from None
  logging.info('process %d of %d, %d local of %d devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(data: int = 0, expert: int = 1,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ('data', 'expert') mesh of `devices` (default: all); data 0 = every device / expert."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if expert < 1 or data < 0:
    raise UserError(f'config.mesh.data={data}, mesh.expert={expert}: use data >= 0 '
                    '(0: every device) and expert >= 1')
  if data == 0:
    if n % expert:
      raise UserError(f'config.mesh.expert={expert} does not divide the {n} devices: '
                      'use a divisor')
    data = n // expert
  if data * expert != n:
    raise UserError(f'config.mesh.data x mesh.expert = {data} x {expert} != {n} devices: '
                    'set mesh.data=0 (every device) or sizes whose product is the device count')
  return jax.make_mesh((data, expert), (DATA, EXPERT),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=devices)


def mesh_of(config) -> Mesh:
  """The mesh of `config.mesh` over every device of every process."""
  return make_mesh(config.mesh.data, config.mesh.expert)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def episode_shardings(mesh: Mesh, episode: Any, experts: bool = False) -> Any:
  """Shardings of a batch of episodes (a pytree of [B, ...] arrays): B over 'data'; with
  `experts`, the task axis of the context arrays [B, T, ...] also over 'expert'."""
  split_tasks = experts and mesh.shape[EXPERT] > 1
  def one(name, leaf):
    if split_tasks and name.startswith('context') and np.ndim(leaf) >= 2:
      if np.shape(leaf)[1] % mesh.shape[EXPERT]:
        raise UserError(f'config.mesh.expert={mesh.shape[EXPERT]} does not divide the '
                        f'{np.shape(leaf)[1]} tasks (experts) of a signal: use a divisor')
      return NamedSharding(mesh, P(DATA, EXPERT))
    return data_sharding(mesh)
  if hasattr(episode, '_fields'):
    return type(episode)(*(jax.tree_util.tree_map(lambda x, n=n: one(n, x), getattr(episode, n))
                           for n in episode._fields))
  return jax.tree_util.tree_map(lambda x: one('', x), episode)


def check_divides(count: int, mesh: Mesh, what: str) -> None:
  """A one-line error unless `count` rows split evenly over the 'data' axis."""
  size = mesh.shape[DATA]
  if count % size:
    raise UserError(f"{what}={count} is not a multiple of the mesh's data axis ({size} "
                    f'devices): use a multiple of {size}, or run on fewer devices')


def process_rows(mesh: Mesh, count: int) -> slice:
  """The rows [start, stop) of a [count, ...] batch split over 'data' that this process's
  devices hold (a contiguous block: the mesh orders devices by process)."""
  index = data_sharding(mesh).addressable_devices_indices_map((count,))
  starts = sorted({s[0].indices(count)[:2] for s in index.values()})
  start, stop = starts[0][0], starts[-1][1]
  if sum(b - a for a, b in starts) != stop - start:
    raise ValueError(f'the rows of process {jax.process_index()} are not contiguous: {starts}')
  return slice(start, stop)


def global_batch(mesh: Mesh, local: Any, count: int, experts: bool = False) -> Any:
  """The global [count, ...] batch from this process's rows (`process_rows`) of it."""
  shardings = episode_shardings(mesh, local, experts)
  return jax.tree_util.tree_map(
      lambda x, s: jax.make_array_from_process_local_data(s, np.asarray(x),
                                                          (count,) + np.shape(x)[1:]),
      local, shardings)


def put(tree: Any, shardings: Any) -> Any:
  """Host arrays every process holds whole -> global arrays of `shardings` (a sharding or
  a tree of them); each device copies only its own block."""
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree_util.tree_map(lambda _: shardings, tree)
  def one(x, s):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, s, lambda index: x[index])
  return jax.tree_util.tree_map(one, tree, shardings)


def to_host(tree: Any) -> Any:
  """Numpy copies of (possibly sharded, multi-process) global arrays, on every process."""
  def one(x):
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree_util.tree_map(one, tree)


COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
               'collective-permute')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2, 'f32': 4,
          's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8, 'c64': 8, 'c128': 16}
_COLLECTIVE = re.compile(r'=\s*(\([^=]*?\)|[a-z0-9]+\[[0-9,]*\]\S*)\s+(' +
                         '|'.join(COLLECTIVES) + r')(-start)?\(')
_SHAPE = re.compile(r'([a-z]+[0-9]*)\[([0-9,]*)\]')


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """{kind: {'count', 'bytes'}} of the collectives in a compiled program's HLO text
  (`jit(f).lower(...).compile().as_text()`); bytes: the result shapes' per device."""
  found = {}
  for shapes, kind, _ in _COLLECTIVE.findall(re.sub(r'/\*.*?\*/', '', hlo_text)):
    size = 0
    for dtype, dims in _SHAPE.findall(shapes):
      size += _BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(',') if d]))
    entry = found.setdefault(kind, {'count': 0, 'bytes': 0})
    entry['count'] += 1
    entry['bytes'] += size
  return found


def describe(found: dict[str, dict[str, int]]) -> str:
  """'all-reduce x2 (1.5 MiB)' ... of `collectives`, or 'none'."""
  return ', '.join(f"{k} x{v['count']} ({v['bytes'] / 2**20:.3g} MiB)"
                   for k, v in sorted(found.items())) or 'none'


def is_main() -> bool:
  """Whether this process writes the files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (nothing to do with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def main_first(fn: Callable[[], T], name: str) -> T:
  """fn() on process 0, then on the others once it is done (e.g. building a dataset on a
  shared disk once); every process returns its own result."""
  if is_main():
    try:
      return fn()
    finally:          # on an error too: the others then meet the same error themselves
      barrier(name)
  barrier(name)
  return fn()


def on_main(fn: Callable[[], T], name: str) -> Optional[T]:
  """fn() on process 0 alone (writing files); the others wait for it and get None."""
  try:
    return fn() if is_main() else None
  finally:
    barrier(name)
