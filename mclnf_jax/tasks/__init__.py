"""Signals as task sequences.

A modality decides how a signal becomes an `Episode` (tasks in order, plus the whole
signal as a query set), how a prediction is formed from a field (`predictor`: identity
for grids, volume rendering for scenes), how inputs route to experts, which metrics
apply and what the figures show (`visuals`, as plain data that `report` draws).
Learners see only a `TaskSpec` of it; meta-training, losses and fields see nothing.
"""
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol

import jax
import numpy as np

from mclnf_jax.types import ApplyFn, Episode, TaskSpec
from mclnf_jax.visuals import FigureRays, FlythroughRays, Visual


class Modality(Protocol):
  """What a learner may ask of a modality; implementations are frozen dataclasses."""
  num_tasks: int
  in_dim: int        # field input width
  out_dim: int       # field output width

  def episode(self, signal: np.ndarray) -> Episode: ...

  def predictor(self, apply_fn: ApplyFn) -> ApplyFn:
    """How predictions are formed from a field: (params, x [N, d_x]) -> [N, d_y].

    Identity (returns apply_fn itself) for images, audio and video; volume rendering
    for scenes."""

  def route(self, field_x: jax.Array) -> jax.Array:
    """G(x): [N, in_dim] field inputs -> [N, num_tasks] expert weights."""

  def to_signal(self, y: jax.Array) -> jax.Array:
    """Query-set values [Q, d_y] -> the signal's own shape (for metrics and plots)."""

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Jittable metrics on signals in their own shape."""

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Metrics that exist only outside JAX (PESQ) on one signal; {} where none."""

  def visuals(self, truths: Sequence[np.ndarray], recons: Sequence[Mapping[str, np.ndarray]],
              scores: Sequence[Mapping[str, float]]) -> list[Visual]:
    """What to show of the drawn signals, as specs of `mclnf_jax.visuals` (drawn by
    `report`, never here): per signal i, its ground truth `truths[i]` (own shape), each
    method's reconstruction `recons[i][method]` and score `scores[i][method]`."""

  def flythrough_rays(self, signal: Any) -> Optional[FlythroughRays]:
    """A camera path around a signal, as rays to render with each adapted field (a GIF
    per signal), or None where the modality has none."""


class Figures(Protocol):
  """Optional hooks of a modality whose figures need the adapted fields themselves
  (scenes: depth, opacity, a top-down view); `report` uses them where a modality has
  them (`getattr`), so the grid modalities need not declare them."""

  def figure_rays(self, signal: Any) -> Optional[FigureRays]:
    """Inputs to render with each learner's adapted field (`learner.predict(state,
    rays)`, one call) for a shown signal, and the signal's data the figures need."""

  def figure_visuals(self, index: int, episode: Episode, renders: Mapping[str, np.ndarray],
                     data: Mapping[str, np.ndarray], step: int, best: str) -> list[Visual]:
    """Specs of shown signal `index`'s figures from each method's predictions on
    `figure_rays` (`renders`), its episode and `data`, after `step` test-time steps;
    `best`: the learner with the highest last-step score."""


def task_spec(modality: Modality) -> TaskSpec:
  """What a learner needs of a modality, as plain numbers and functions.

  A modality whose context sets are pools to draw batches from (scenes) has a
  `batching()` giving TaskSpec's batch, tto_batch, query and draw; without it every
  step fits a task's whole context set (full batch, grids)."""
  batching = getattr(modality, 'batching', None)
  return TaskSpec(in_dim=modality.in_dim, out_dim=modality.out_dim,
                  num_tasks=modality.num_tasks, predictor=modality.predictor,
                  route=modality.route, **(batching() if batching is not None else {}))
