"""The paper's evaluation protocol: metric of the whole signal after k steps per task.

"Step k" means k optimisation steps on each task, task after task, and the metric is
taken on the whole signal after the last task (offline learners take k steps on the
whole signal). One jitted `adapt` with a traced step count serves every k; learners
whose adaptation is resumable continue from the previous k instead of starting over.
`evaluate_learner` runs it over the meta-test signals and caches the curves on disk.
"""
import json
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mclnf_jax import files, metric_writers, report
from mclnf_jax.errors import UserError
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
    preds, targets = np.asarray(preds), np.asarray(episodes.query_y)
    rows = [self.modality.host_metrics(p, self.modality.to_signal(t))
            for p, t in zip(preds, targets)]
    return {m: np.array([r[m] for r in rows]) for m in rows[0]}


def read_cached(path: str) -> dict:
  """A cached result (results/<name>.json); a one-line error naming the file if it is not
  one (it is never overwritten silently: it may be a result to keep)."""
  fix = f'move {path} aside (the learner is then re-evaluated) or use another --workdir'
  try:
    with open(path, encoding='utf-8') as f:
      cached = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise UserError(f'{path} is not valid JSON ({e}): {fix}') from None
  if not isinstance(cached, dict) or not isinstance(cached.get('identity'), dict) \
      or not isinstance(cached.get('curves'), dict) or 'steps' not in cached:
    raise UserError(f'{path} is not an evaluation result (no identity/steps/curves): {fix}')
  return cached


def evaluate_learner(learner: Learner, modality: Modality, meta_params: Any, test: Any,
                     episodes: Callable[[Any], Episode], e, identity: dict,
                     results_dir: str, metrics_folder: Optional[str] = None) -> dict:
  """Curves of one learner on the meta-test signals `test`, cached in results/<name>.json.

  e: config.eval; episodes(signals) stacks their episodes; identity: what the result
  depends on (a cached result with another identity is recomputed). The mean curves
  are also written, one record per test-time step k, to `metrics_folder`'s
  eval_metrics.jsonl and tensorboard/eval/ (`metric_writers`); by default the learner's
  folder beside results_dir, <workdir>/<name>/. A recomputed evaluation replaces them.
  """
  path = os.path.join(results_dir, f'{learner.name}.json')
  if os.path.exists(path):
    cached = read_cached(path)
    if cached['identity'] == identity:
      logging.info('%s: evaluation already done (%s)', learner.name, path)
      return cached
  steps = eval_steps(e.max_steps)
  evaluator = Evaluator(learner, modality)
  per_signal, kept, seconds = {}, [], 0.0
  for start in range(0, len(test), e.batch_size):
    group = test[start:start + e.batch_size]
    keep = min(len(group), max(0, e.num_shown - start))
    values, preds, states, secs = evaluator.curves(meta_params, episodes(group), steps,
                                                   keep=keep)
    report.save_flythroughs(modality, learner.name, learner.predict, states, group[:keep],
                            start, results_dir)
    for k, v in values.items():
      per_signal.setdefault(k, []).append(v)
    kept.append(preds)
    seconds += secs
  per_signal = {k: np.concatenate(v).astype(float) for k, v in per_signal.items()}
  result = {'identity': identity, 'steps': steps, 'num_signals': len(test),
            'curves': {k: np.nanmean(v, axis=0).tolist() for k, v in per_signal.items()},
            'per_signal': {k: v.tolist() for k, v in per_signal.items()},
            'adapt_seconds': seconds}
  if metrics_folder is None:
    metrics_folder = os.path.join(os.path.dirname(os.path.abspath(results_dir)),
                                  learner.name)
  with metric_writers.MetricWriter(metrics_folder, 'eval', start=0) as writer:
    for i, k in enumerate(steps):
      writer.write(k, **{m: c[i] for m, c in result['curves'].items()})
  files.write_npz(os.path.join(results_dir, f'{learner.name}.npz'),
                  recon=np.concatenate(kept))
  files.write_json(path, result)
  return result
