"""A run's report: tables, curves and what its modality asks to show of the signals.

`experiment` calls `save_flythroughs` while evaluating (with each learner's adapted
fields at hand) and `write_report` once every learner is evaluated. The modality only
says what to show (`Modality.visuals`, `Modality.flythrough_rays`); `figures` draws it.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from mclnf_jax.report import figures
from mclnf_jax.report.tables import write_curves_csv, write_table
from mclnf_jax.tasks import Modality
from mclnf_jax.visuals import Animation

FLYTHROUGH_MIN_HEIGHT = 256     # pixels: fly-through frames are scaled up to this


def save_flythroughs(modality: Modality, name: str, predict, states, signals, first: int,
                     results_dir: str) -> None:
  """`<name>_flythrough_<first + i>.gif` of each signal the modality gives a camera path
  for, rendered by `predict(state_i, rays)` from its adapted field `states[i]`."""
  render = None
  for i, signal in enumerate(signals):
    fly = modality.flythrough_rays(signal)
    if fly is None:
      continue
    render = render or jax.jit(predict)
    state = jax.tree_util.tree_map(lambda x, i=i: x[i], states)
    rgb = np.asarray(render(state, fly.rays)).reshape(-1, *fly.frame_shape, 3)
    figures.draw(os.path.join(results_dir, f'{name}_flythrough_{first + i}'),
                 Animation(suffix='', truth=None, recons={name: rgb},
                           min_height=FLYTHROUGH_MIN_HEIGHT))


def write_report(workdir: str, modality: Modality, results: dict[str, dict], shown) -> None:
  """Tables, curves and reconstructions of a run; `shown`: the episodes of the signals drawn.

  Reconstructions are each method's at its best step (by PSNR, else the first metric),
  as in the paper's Fig. 3, read from `results/<name>.npz`.
  """
  steps = next(iter(results.values()))['steps']
  curves = {name: {k: np.asarray(v) for k, v in r['curves'].items()}
            for name, r in results.items()}
  metrics = sorted({k for c in curves.values() for k in c})
  dataset = dataset_name(results)
  notes = {name: test_time_rule(r) for name, r in results.items()}
  for metric in metrics:
    write_table(os.path.join(workdir, f'table_{metric}'), steps, curves, metric, notes=notes)
    figures.plot_curves(os.path.join(workdir, f'curves_{metric}.png'), steps, curves, metric,
                        dataset=dataset)
  write_curves_csv(os.path.join(workdir, 'curves.csv'), steps, curves)
  main_metric = metrics[0] if 'psnr' not in metrics else 'psnr'
  truths = [np.asarray(modality.to_signal(y)) for y in shown.query_y]
  recons, scores, best_steps = [{} for _ in truths], [{} for _ in truths], {}
  for name, r in results.items():
    with np.load(os.path.join(workdir, 'results', f'{name}.npz')) as npz:
      recon = npz['recon']
    best = int(np.nanargmax(r['curves'][main_metric]))
    best_steps[name] = int(steps[best])
    for i in range(len(truths)):
      recons[i][name] = recon[i, best]
      scores[i][name] = r['per_signal'][main_metric][i][best]
  if truths:
    for visual in modality.visuals(truths, recons, scores):
      figures.draw(os.path.join(workdir, 'reconstructions'), visual, metric=main_metric,
                   steps=best_steps, dataset=dataset)


def dataset_name(results: dict[str, dict]) -> str:
  """The dataset the results are of (config `data.name`, as their identity holds it), or
  '' when they do not say."""
  for r in results.values():
    data = r.get('identity', {}).get('data', {})
    if isinstance(data, dict) and data.get('name'):
      return str(data['name'])
  return ''


def test_time_rule(result: dict) -> str:
  """How a result's learner adapted at test time, e.g. 'adam 0.001' or 'Meta-SGD'."""
  method = next(iter(result.get('identity', {}).get('methods', {}).values()), {})
  if method.get('meta_sgd'):
    return 'Meta-SGD'
  return f"{method.get('tto_opt', '?')} {method.get('tto_lr', float('nan')):g}"
