"""The paper's evaluation protocol: metric of the whole signal after k steps per task.

"Step k" means k optimisation steps on each task, task after task, and the metric is
taken on the whole signal after the last task (offline learners take k steps on the
whole signal). One jitted `adapt` with a traced step count serves every k; learners
whose adaptation is resumable continue from the previous k instead of starting over.
"""
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mclnf_jax.learners.base import Learner
from mclnf_jax.tasks import Modality
from mclnf_jax.types import Episode


def eval_steps(max_steps: int) -> list[int]:
  """1, 2, 4, ..., max_steps (max_steps appended when it is not a power of two)."""
  steps, k = [], 1
  while k <= max_steps:
    steps.append(k)
    k *= 2
  if steps[-1] != max_steps:
    steps.append(max_steps)
  return steps


def _broadcast(tree: Any, n: int) -> Any:
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), tree)


class Evaluator:
  """Compiled evaluation functions of one learner on one modality (reused across calls)."""

  def __init__(self, learner: Learner, modality: Modality):
    self.learner = learner
    self.modality = modality
    self.start = jax.jit(learner.start)
    self.adapt = jax.jit(jax.vmap(learner.adapt, in_axes=(0, 0, None)))

    def measure(state, episode: Episode):
      pred = modality.to_signal(learner.predict(state, episode.query_x))
      return modality.metrics(pred, modality.to_signal(episode.query_y)), pred
    self.measure = jax.jit(jax.vmap(measure))

  def curves(self, meta_params: Any, episodes: Episode, steps: list[int],
             keep: int = 0, log: Optional[Callable[[str], None]] = logging.info):
    """Metrics of every signal at every step count.

    Returns (values: metric -> [S, len(steps)], kept: [keep, len(steps), *signal]
    predictions of the first `keep` signals, their adapted states after the last step,
    seconds spent adapting).
    """
    num = episodes.context_x.shape[0]
    state0 = _broadcast(self.start(meta_params), num)
    episodes = jax.tree_util.tree_map(jnp.asarray, episodes)
    state, done, rows, kept, seconds = state0, 0, [], [], 0.0
    for k in steps:
      t0 = time.perf_counter()
      if self.learner.resumable:
        state = self.adapt(state, episodes, jnp.int32(k - done))
        done = k
      else:
        state = self.adapt(state0, episodes, jnp.int32(k))
      values, preds = self.measure(state, episodes)
      values = jax.device_get(values)
      values.update(self._host_metrics(preds, episodes))
      seconds += time.perf_counter() - t0
      rows.append(values)
      kept.append(np.asarray(preds[:keep]))
      if log:
        shown = ' '.join(f'{m}={np.mean(v):.4g}' for m, v in values.items())
        log(f'eval {self.learner.name} step {k}/{steps[-1]} {shown} [{seconds:.1f} s]')
    values = {m: np.stack([r[m] for r in rows], axis=1) for m in rows[0]}
    final = jax.tree_util.tree_map(lambda x: x[:keep], state)
    return values, np.stack(kept, axis=1), final, seconds

  def _host_metrics(self, preds, episodes: Episode) -> dict[str, np.ndarray]:
    """Metrics that only exist outside JAX (PESQ), per signal."""
    host = getattr(self.modality, 'host_metrics', None)
    if host is None:
      return {}
    preds, targets = np.asarray(preds), np.asarray(episodes.query_y)
    rows = [host(p, self.modality.to_signal(t)) for p, t in zip(preds, targets)]
    return {m: np.array([r[m] for r in rows]) for m in rows[0]}
