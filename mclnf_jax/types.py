"""Types every part of the package shares, owned by none of them.

An `Episode` is one signal seen as T tasks; a `TaskSpec` is what a learner needs to know
of the signal's modality, as plain numbers and functions (learners never import
`tasks/`, so whoever builds a learner fills it in from a modality).
"""
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

# Modalities (config.modality); tasks/factory.py builds each.
MODALITIES = ('image', 'video', 'audio', 'nerf')

Params = Any
State = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]
LossFn = Callable[[ApplyFn, Params, jax.Array, jax.Array], jax.Array]


class Episode(NamedTuple):
  """One signal seen as T tasks (a pytree; stack episodes on a leading axis to batch).

  context_x: [T, m, d_x]  inputs of each task's context set, in arrival order.
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
    (identity for grids, volume rendering for scenes).
  route: G(x), field inputs [N, in_dim] -> [N, num_tasks] expert weights.
  """
  in_dim: int
  out_dim: int
  num_tasks: int
  predictor: Callable[[ApplyFn], ApplyFn]
  route: Callable[[jax.Array], jax.Array]
