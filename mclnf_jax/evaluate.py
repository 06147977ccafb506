"""The paper's evaluation protocol: metric of the whole signal after k steps per task.

"Step k" means k optimisation steps on each task, task after task, and the metric is
taken on the whole signal after the last task (offline learners take k steps on the
whole signal). One jitted `adapt` with a traced step count serves every k; learners
whose adaptation is resumable continue from the previous k instead of starting over.
`evaluate_learner` runs it over the meta-test signals and caches the curves on disk.

Over a device mesh (`distributed.py`) a group of signals is split over the 'data' axis;
a group that does not divide it is padded with copies of its last signal, whose rows are
dropped from every result (so any eval.batch_size and data.num_test work). Every process
builds the whole group (meta-test sets are small) and reads the results; process 0
alone writes the files.
"""
import json
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mclnf_jax import distributed, files, metric_writers, report
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


def _pad(tree: Any, size: int) -> Any:
  """Rows [n, ...] -> [size, ...], the last row repeated (results of the copies dropped)."""
  def one(x):
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if size > len(x) else x
  return jax.tree_util.tree_map(one, tree)


class Evaluator:
  """Compiled evaluation functions of one learner on one modality (reused across calls).

  mesh: split each group of signals over its 'data' axis (padded to a multiple of it);
  the adapted states stay split, metrics and predictions come back replicated.
  """

  def __init__(self, learner: Learner, modality: Modality,
               mesh: Optional[jax.sharding.Mesh] = None):
    self.learner = learner
    self.modality = modality
    self.mesh = mesh

    def measure(state, episode: Episode):
      pred = modality.to_signal(learner.predict(state, episode.query_x))
      return modality.metrics(pred, modality.to_signal(episode.query_y)), pred
    if mesh is None:
      self.start = jax.jit(learner.start)
      self.adapt = jax.jit(jax.vmap(learner.adapt, in_axes=(0, 0, None)))
      self.measure = jax.jit(jax.vmap(measure))
      return
    split, whole = distributed.data_sharding(mesh), distributed.replicated(mesh)
    self.start = jax.jit(learner.start, out_shardings=whole)
    self.adapt = jax.jit(jax.vmap(learner.adapt, in_axes=(0, 0, None)), out_shardings=split)
    self.measure = jax.jit(jax.vmap(measure), out_shardings=whole)
    self.spread = jax.jit(_broadcast, static_argnums=1, out_shardings=split)
    self.first = jax.jit(lambda tree, n: jax.tree_util.tree_map(lambda x: x[:n], tree),
                         static_argnums=1, out_shardings=whole)

  def _place(self, meta_params: Any, episodes: Episode):
    """(state0 [S', ...], episodes [S', ...], S): S signals, padded to S' over a mesh."""
    num = episodes.context_x.shape[0]
    if self.mesh is None:
      state0 = _broadcast(self.start(meta_params), num)
      return state0, jax.tree_util.tree_map(jnp.asarray, episodes), num
    size = -(-num // self.mesh.shape[distributed.DATA]) * self.mesh.shape[distributed.DATA]
    episodes = distributed.put(_pad(episodes, size), distributed.data_sharding(self.mesh))
    meta_params = distributed.put(distributed.to_host(meta_params),
                                  distributed.replicated(self.mesh))
    return self.spread(self.start(meta_params), size), episodes, num

  def curves(self, meta_params: Any, episodes: Episode, steps: list[int],
             keep: int = 0, log: Optional[Callable[[str], None]] = logging.info):
    """Metrics of every signal at every step count.

    Returns (values: metric -> [S, len(steps)], kept: [keep, len(steps), *signal]
    predictions of the first `keep` signals, their adapted states after the last step,
    seconds spent adapting).
    """
    targets = episodes.query_y
    state0, episodes, num = self._place(meta_params, episodes)
    count = (lambda k: np.int32(k)) if self.mesh is not None else jnp.int32
    state, done, rows, kept, seconds = state0, 0, [], [], 0.0
    for k in steps:
      t0 = time.perf_counter()
      if self.learner.resumable:
        state = self.adapt(state, episodes, count(k - done))
        done = k
      else:
        state = self.adapt(state0, episodes, count(k))
      values, preds = self.measure(state, episodes)
      values = {m: v[:num] for m, v in jax.device_get(values).items()}
      preds = np.asarray(preds)[:num]
      values.update(self._host_metrics(preds, targets))
      seconds += time.perf_counter() - t0
      rows.append(values)
      kept.append(np.asarray(preds[:keep]))
      if log:
        shown = ' '.join(f'{m}={np.mean(v):.4g}' for m, v in values.items())
        log(f'eval {self.learner.name} step {k}/{steps[-1]} {shown} [{seconds:.1f} s]')
    values = {m: np.stack([r[m] for r in rows], axis=1) for m in rows[0]}
    if self.mesh is None:
      final = jax.tree_util.tree_map(lambda x: x[:keep], state)
    else:     # numpy: process 0 alone renders figures from it
      final = jax.tree_util.tree_map(np.asarray, self.first(state, keep))
    return values, np.stack(kept, axis=1), final, seconds

  def _host_metrics(self, preds, targets) -> dict[str, np.ndarray]:
    """Metrics that only exist outside JAX (PESQ), per signal (targets: query_y)."""
    preds, targets = np.asarray(preds), np.asarray(targets)
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
                     results_dir: str, metrics_folder: Optional[str] = None,
                     mesh: Optional[jax.sharding.Mesh] = None) -> dict:
  """Curves of one learner on the meta-test signals `test`, cached in results/<name>.json.

  e: config.eval; episodes(signals) stacks their episodes; identity: what the result
  depends on (a cached result with another identity is recomputed). The mean curves
  are also written, one record per test-time step k, to `metrics_folder`'s
  eval_metrics.jsonl and tensorboard/eval/ (`metric_writers`); by default the learner's
  folder beside results_dir, <workdir>/<name>/. A recomputed evaluation replaces them.
  mesh: evaluate each group split over its 'data' axis (every process computes; process
  0 writes every file while the others wait).
  """
  path = os.path.join(results_dir, f'{learner.name}.json')
  if os.path.exists(path):
    cached = read_cached(path)
    if cached['identity'] == identity:
      logging.info('%s: evaluation already done (%s)', learner.name, path)
      return cached
  steps = eval_steps(e.max_steps)
  evaluator = Evaluator(learner, modality, mesh)
  per_signal, kept, seconds = {}, [], 0.0
  for start in range(0, len(test), e.batch_size):
    group = test[start:start + e.batch_size]
    keep = min(len(group), max(0, e.num_shown - start))
    values, preds, states, secs = evaluator.curves(meta_params, episodes(group), steps,
                                                   keep=keep)
    if distributed.is_main():
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

  def write():
    with metric_writers.MetricWriter(metrics_folder, 'eval', start=0) as writer:
      for i, k in enumerate(steps):
        writer.write(k, **{m: c[i] for m, c in result['curves'].items()})
    files.write_npz(os.path.join(results_dir, f'{learner.name}.npz'),
                    recon=np.concatenate(kept))
    files.write_json(path, result)
  distributed.on_main(write, f'evaluated {learner.name}')
  return result
