"""A live stream of tasks: learn each as it arrives, answer queries at any time.

    from mclnf_jax.stream import Stream
    stream = Stream.from_workdir(workdir, 'modular')      # or Stream(config, init)
    for x, y, cell in tasks:                              # no known end
      stream.observe(x, y, cell)                          # one new expert, k steps
      image = stream.query(coords)                        # everything seen so far
    stream.save(path); stream = Stream.load(path)         # orbax, survives a restart

The signal's layout is the config's modality: its cells (tasks.grid: strips, frames,
segments, ground cells) number the tasks, and `modality.route` sends a field input to
its cell. A task is one cell's context (x, y): x [m, in_dim] field inputs (scenes: a
pool of rays [m, 6]), y [m, d] targets. Modular learners (`modular`, `modular_fim`)
grow one expert per cell in a doubling buffer (stream/experts.py), fitted exactly as the
batch evaluation fits it; a cell not seen yet is answered by the shared init. Single-
network learners (CL, ER, EWC, MAML+CL, OML, ...) adapt one state task after task
(stream/sequential.py), so every learner can be compared on the same stream.
"""
import collections
import json
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mclnf_jax import api, checkpoints, learners
from mclnf_jax.errors import UserError
from mclnf_jax.stream.experts import ExpertBuffer
from mclnf_jax.stream.merge import MERGES
from mclnf_jax.stream.sequential import Replay, Sequential
from mclnf_jax.tasks import Modality, task_spec
from mclnf_jax.tasks.factory import make_modality

# Learners whose adaptation reads earlier tasks of the same episode: on a stream of
# one-task episodes they would silently be CL.
NOT_STREAMABLE = {'meil_nerf': 'its distillation draws inputs of earlier tasks of the '
                               'episode', 'mer': 'its replay buffer lives in one episode',
                  'mean': 'it predicts the mean of one whole episode'}
REPLAY = ('er',)      # replay learners whose buffer the stream carries across tasks


class Stream:
  """One learner on a stream of tasks of the layout of `config` (see module doc).

  init: the learner's meta-parameters (`api.load_init`); None: its random init
    (config.seed). steps: test-time steps per task (default config.eval.max_steps).
  capacity: initial expert slots (doubles when full); max_experts: 0 for no cap, else
    the most single-cell experts kept before the oldest is merged into a shared expert
    (modular learners), by `merge` ('distill' or 'average', see stream/merge.py) with
    `merge_steps` fitting steps (default 2 x steps).
  """

  def __init__(self, config: ml_collections.ConfigDict, init: Any = None, *,
               learner: str = 'modular', modality: Optional[Modality] = None,
               steps: Optional[int] = None, capacity: int = 8, max_experts: int = 0,
               merge: str = 'distill', merge_steps: Optional[int] = None):
    name = learners.canonical(learner)
    if name in NOT_STREAMABLE:
      raise UserError(f'learner {name} cannot learn a stream: {NOT_STREAMABLE[name]}; '
                      'use er for replay')
    self.config, self.learner = config, name
    self.modality = modality or make_modality(config)
    spec = task_spec(self.modality)
    built = learners.build(config, name, spec)
    self.init = built.init(jax.random.key(config.seed)) if init is None else init
    self.steps = int(config.eval.max_steps if steps is None else steps)
    if self.steps < 1 or capacity < 1 or max_experts < 0:
      raise UserError(f'Stream: steps={self.steps}, capacity={capacity}, max_experts='
                      f'{max_experts}; give steps >= 1, capacity >= 1, max_experts >= 0')
    self.num_cells, self.in_dim = int(spec.num_tasks), int(spec.in_dim)
    self.modular = learners.BY_NAME[name].modular
    if max_experts and not self.modular:
      raise UserError(f'max_experts: {name} holds one network, no experts to cap; '
                      'use it with modular or modular_fim')
    self.traces = collections.Counter()       # traces (compiles) per jitted function
    merge_steps = 2 * self.steps if merge_steps is None else int(merge_steps)
    self.core = self._core(built, spec, capacity, max_experts, merge, merge_steps)
    self.tasks = 0                            # tasks observed
    self.task_shapes = None                   # (x, y) shapes of the first task
    predict, state = self.core.parts()
    self.out_dim = int(jax.eval_shape(predict, state, jnp.zeros((1, self.in_dim))).shape[-1])

  def _core(self, built, spec, capacity: int, max_experts: int, merge: str, merge_steps: int):
    if self.modular:
      one = learners.build(self.config, self.learner, spec._replace(num_tasks=1))
      field = learners.build_setup(self.config, self.learner, spec).field
      return ExpertBuffer(one, self.init, field, spec.predictor, spec.route,
                          self.num_cells, capacity=capacity, max_experts=max_experts,
                          merge=merge, merge_steps=merge_steps, traces=self.traces)
    if self.learner in REPLAY:
      setup = learners.build_setup(self.config, self.learner, spec)
      return Replay(built, self.init, self.traces, setup, self.num_cells)
    return Sequential(built, self.init, self.traces)

  # ------------------------------------------------------------ constructors ---

  @classmethod
  def from_workdir(cls, workdir: str, learner: str = 'modular',
                   config: Optional[ml_collections.ConfigDict] = None, **kwargs) -> 'Stream':
    """A stream from the best meta-parameters of `learner` in a meta-trained workdir.

    config: the stream's config (its layout may differ from the run's, e.g. more cells);
    None: the run's own (`api.load_config`)."""
    trained = api.load_config(workdir, learner)
    init = api.load_init(workdir, learner, trained)
    return cls(trained if config is None else config, init, learner=learner, **kwargs)

  @classmethod
  def from_npz(cls, path: str, config: ml_collections.ConfigDict,
               learner: str = 'modular', **kwargs) -> 'Stream':
    """A stream from meta-parameters exported with `api.export_npz`."""
    modality = kwargs.get('modality') or make_modality(config)
    built = learners.build(config, learner, task_spec(modality))
    like = jax.eval_shape(built.init, jax.random.key(0))
    init = api.load_npz(path, like=like)
    return cls(config, init, learner=learner, **{**kwargs, 'modality': modality})

  # ------------------------------------------------------------------ tasks ---

  def observe(self, x: Any, y: Any, cell: int) -> 'Stream':
    """Learns one task: cell `cell`'s context x [m, in_dim], y [m, out] (see module doc)."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    self._check_task(x, y, cell)
    self.core.observe(jnp.asarray(x), jnp.asarray(y), int(cell), jnp.int32(self.steps))
    self.tasks += 1
    return self

  def _check_task(self, x: np.ndarray, y: np.ndarray, cell: Any) -> None:
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) \
        or not 0 <= cell < self.num_cells:
      raise UserError(f'observe: cell={cell!r} is not a cell of this layout; give an int '
                      f'in [0, {self.num_cells}) (the task grid has {self.num_cells} cells)')
    if x.ndim != 2 or x.shape[1] != self.in_dim or len(x) < 1:
      raise UserError(f'observe: x of shape {x.shape}; give [m, {self.in_dim}] inputs '
                      'of the task (m >= 1)')
    if y.shape != (len(x), self.out_dim):
      raise UserError(f'observe: y of shape {y.shape} for x of shape {x.shape}; give '
                      f'[{len(x)}, {self.out_dim}] targets, one per input')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
      raise UserError('observe: x or y holds NaN or inf; give finite values')
    if self.task_shapes is None:
      self.task_shapes = (x.shape, y.shape)

  def query(self, x: Any) -> np.ndarray:
    """Predictions [N, out] at inputs x [N, in_dim] (scenes: rays [N, 6], rendered) from
    everything seen so far; unseen cells answer with the init (modular learners)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != self.in_dim:
      raise UserError(f'query: x of shape {x.shape}; give [N, {self.in_dim}] inputs')
    return np.asarray(self.core.query(jnp.asarray(x)))

  def render(self, camera: Any, chunk: int = 4096) -> np.ndarray:
    """RGB [V, H, W, 3] of a scene stream seen from `camera` (`api.Camera` or a
    `data.scene.Scene`), as `api.render` renders a fitted scene."""
    if self.in_dim != 6:
      raise UserError(f'render: this stream takes {self.in_dim}-d coordinates, not rays; '
                      'render needs a scene (nerf) stream, use query for grids')
    predict, state = self.core.parts()
    return api.render(_Fitted(_Predictor(predict), state), camera, chunk)

  # -------------------------------------------------------------- measures ---

  def block_until_ready(self) -> 'Stream':
    """Waits until every observed task is fitted (JAX dispatches asynchronously)."""
    jax.block_until_ready(self.core.parts()[1])
    return self

  @property
  def num_experts(self) -> int:
    """Experts held (modular learners; single-network learners hold one network)."""
    return self.core.num_experts if self.modular else 1

  @property
  def capacity(self) -> int:
    return self.core.capacity if self.modular else 1

  def bytes_per_expert(self) -> int:
    """Bytes of one expert (modular) or of the whole learner state (single network)."""
    return self.core.expert_bytes() if self.modular else self.core.state_bytes()

  # ----------------------------------------------------------------- saving ---

  def save(self, path: str) -> None:
    """Writes the stream as one orbax checkpoint under `path` (a folder; atomic: a killed
    save leaves the previous one): the experts or learner state, the cell table, the
    meta-parameters and the config, so `Stream.load(path)` continues it."""
    shapes = np.asarray(self.task_shapes or ((0, 0), (0, 0)), np.int32)
    tree = {'core': self.core.tree(), 'meta': self.init, 'tasks': np.int32(self.tasks),
            'shapes': shapes, 'steps': np.int32(self.steps),
            'about': _text(json.dumps({'learner': self.learner,
                                       'config': json.loads(self.config.to_json())}))}
    with checkpoints.manager_at(path) as m:                 # saves are numbered; the latest is kept
      m.save((m.latest_step() or 0) + 1, args=ocp.args.StandardSave(tree), force=True)

  @classmethod
  def load(cls, path: str, modality: Optional[Modality] = None) -> 'Stream':
    """The stream saved under `path` (its config rebuilt from the checkpoint; a scene
    stream whose modality was given to the constructor needs it again)."""
    if not os.path.isdir(os.path.expanduser(path)):
      raise UserError(f'no saved stream in {path}: call Stream.save(path) first')
    with checkpoints.manager_at(path) as m:
      step = m.latest_step()
      if step is None:
        raise UserError(f'no saved stream in {path}: call Stream.save(path) first')
      tree = m.restore(step, args=ocp.args.StandardRestore())
    about = json.loads(bytes(np.asarray(tree['about'])).decode())
    config = api.config_from(about['config'])
    kwargs = {'learner': about['learner'], 'modality': modality,
              'steps': int(tree['steps'])}
    if learners.BY_NAME[learners.canonical(about['learner'])].modular:
      core = tree['core']
      kwargs.update(max_experts=int(core['max_experts']), merge_steps=int(core['merge_steps']),
                    merge=MERGES[int(core['merge'])])
    stream = cls(config, _like(tree['meta']), **kwargs)
    stream.tasks = int(tree['tasks'])
    if stream.tasks:
      x_shape, y_shape = (tuple(int(v) for v in s) for s in np.asarray(tree['shapes']))
      stream.task_shapes = (x_shape, y_shape)
      stream.core.prepare(x_shape, y_shape)
    stream.core.restore(tree['core'])
    return stream


class _Predictor(collections.namedtuple('_Predictor', 'predict')):
  """What `api.render` asks of a learner: predict(state, rays)."""


class _Fitted(collections.namedtuple('_Fitted', 'learner state')):
  """What `api.render` asks of a fit: its learner and state."""


def _text(text: str) -> np.ndarray:
  return np.frombuffer(text.encode(), np.uint8).copy()


def _like(tree: Any) -> Any:
  return jax.tree.map(jnp.asarray, tree)
