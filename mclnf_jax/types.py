"""Types every part of the package shares, owned by none of them.

An `Episode` is one signal seen as T tasks; a `TaskSpec` is what a learner needs to know
of the signal's modality, as plain numbers and functions (learners never import
`tasks/`, so whoever builds a learner fills it in from a modality).
"""
import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

# draw(pool_x [M, d_x], pool_y [M, d_y], index, count) -> (x [count, d], y [count, d_y]):
# the `index`-th batch of `count` rows of a task's pool (index a traced int32; -1 is the
# meta-loss's query set). See TaskSpec.
DrawFn = Callable[[jax.Array, jax.Array, Any, int], tuple[jax.Array, jax.Array]]

# Modalities (config.modality); tasks/factory.py builds each.
MODALITIES = ('image', 'video', 'audio', 'nerf')

Params = Any
State = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]
LossFn = Callable[[ApplyFn, Params, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class GroupedPrediction:
  """A prediction formed from a field, declared so a loss can look inside it.

  Calling it predicts: (params, x [N, d_x]) -> [N, d_y], as any ApplyFn. The promise:
  prediction row i depends only on its own contiguous group of rows of each call the
  prediction makes to the field, rows [i k, (i + 1) k) of a call of R rows, k = R / N
  (volume rendering: ray i owns its k samples; a renderer may call the field more than
  once, e.g. coarse then fine samples, each call with its own k).
  field: the field apply function it is built from.
  over:  apply_fn -> the same prediction over another field apply function, making each
         field call whole (never in chunks), so a caller sees every call's rows at once
         (the FIM loss records layer taps through it, `fisher.grouped_taps`).
  predict: the prediction itself (it may form large N in chunks).
  """
  field: ApplyFn
  over: Callable[[ApplyFn], ApplyFn]
  predict: ApplyFn

  def __call__(self, params: Params, x: jax.Array) -> jax.Array:
    return self.predict(params, x)


class Episode(NamedTuple):
  """One signal seen as T tasks (a pytree; stack episodes on a leading axis to batch).

  context_x: [T, m, d_x]  inputs of each task's context set, in arrival order (for a
                          modality that draws batches, see `TaskSpec.draw`, each task's
                          pool: every step of an inner loop fits a batch drawn from it).
  context_y: [T, m, d_y]  targets of each task.
  query_x:   [Q, d_x]     the whole signal (or held-out views) for metrics.
  query_y:   [Q, d_y]
  """
  context_x: Any
  context_y: Any
  query_x: Any
  query_y: Any


def stack_episodes(episodes: list[Episode]) -> Episode:
  return Episode(*(np.stack(parts) for parts in zip(*episodes)))


class TaskSpec(NamedTuple):
  """The modality as a learner sees it.

  in_dim / out_dim: field input and output widths.
  num_tasks: T, the number of experts a modular learner grows.
  predictor: forms predictions from a field, apply_fn -> (params, x [N, d_x]) -> [N, d_y]
    (identity for grids; volume rendering for scenes, a `GroupedPrediction`).
  route: G(x), field inputs [N, in_dim] -> [N, num_tasks] expert weights.

  How an inner loop picks each step's data (all 0 / None: full batch, every step fits
  a task's whole context set, and the meta-loss is taken on it too: grids):
  batch: rows fitted per inner step in meta-training; 0: the whole context set.
  tto_batch: rows per test-time step; 0: `batch`.
  query: rows of each task's meta-loss query set; 0: `batch`.
  draw: a `DrawFn`, a pure function of (pool, index): step k of an inner loop fits
    draw(pool_x, pool_y, k, batch), the meta-loss is taken on draw(pool_x, pool_y, -1,
    query). Its x may carry columns beyond the field input that the predictor reads
    (scenes: a stratification seed per ray).
  """
  in_dim: int
  out_dim: int
  num_tasks: int
  predictor: Callable[[ApplyFn], ApplyFn]
  route: Callable[[jax.Array], jax.Array]
  batch: int = 0
  tto_batch: int = 0
  query: int = 0
  draw: Optional[DrawFn] = None
