"""A run's report: tables, curves and what its modality asks to show of the signals.

`experiment` calls `save_flythroughs` while evaluating (with each learner's adapted
fields at hand) and `write_report` once every learner is evaluated. The modality only
says what to show (`Modality.visuals`, `Modality.flythrough_rays`, and for scenes
`figure_rays` / `figure_visuals`); `figures` draws it.

What needs adapted fields is rendered by `save_flythroughs` and kept beside the results
(`results/<name>_flythrough_<i>.npz`: the fly-through frames; `results/<name>_figure_<i>
.npz`: the renders of `figure_rays` and its data), so `write_report` can compare
learners: `flythrough_<i>.gif`/`.mp4` with the best learner (highest last-step PSNR)
beside the best baseline (the best learner that is not meta-learned, the trivial mean
apart), and the modality's figures (`scene_views_<i>.png`, `scene_routing_<i>.png`).
"""
from __future__ import annotations

import os

import jax
import numpy as np

from mclnf_jax import files, learners
from mclnf_jax.report import figures
from mclnf_jax.report.tables import display_name, method_group, write_curves_csv, write_table
from mclnf_jax.tasks import Modality
from mclnf_jax.types import Episode
from mclnf_jax.visuals import Animation

FLYTHROUGH_MIN_HEIGHT = 256     # pixels: fly-through frames are scaled up to this
FLYTHROUGH_FRAME_MS = 150       # per frame of the side-by-side fly-through


def save_flythroughs(modality: Modality, name: str, predict, states, signals, first: int,
                     results_dir: str) -> None:
  """`<name>_flythrough_<first + i>.gif` of each signal the modality gives a camera path
  for, rendered by `predict(state_i, rays)` from its adapted field `states[i]`, its
  frames kept in `<name>_flythrough_<first + i>.npz`; and where the modality has figure
  rays, their renders in `<name>_figure_<first + i>.npz` (for `write_report`)."""
  render = None
  figure_rays = getattr(modality, 'figure_rays', None)
  for i, signal in enumerate(signals):
    fly = modality.flythrough_rays(signal)
    extra = figure_rays(signal) if figure_rays is not None else None
    if fly is None and extra is None:
      continue
    render = render or jax.jit(predict)
    state = jax.tree_util.tree_map(lambda x, i=i: x[i], states)
    stem = os.path.join(results_dir, f'{name}_{{}}_{first + i}')
    if fly is not None:
      rgb = np.asarray(render(state, fly.rays)).reshape(-1, *fly.frame_shape, 3)
      figures.draw(stem.format('flythrough'),
                   Animation(suffix='', truth=None, recons={name: rgb},
                             min_height=FLYTHROUGH_MIN_HEIGHT))
      frames = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
      _save_npz(stem.format('flythrough') + '.npz', frames=frames)
    if extra is not None:
      out = np.asarray(render(state, extra.rays), np.float32)
      _save_npz(stem.format('figure') + '.npz', render=out,
                **{f'data_{k}': np.asarray(v) for k, v in extra.data.items()})


def _save_npz(path: str, **arrays) -> None:
  files.atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


def _load_npz(path: str) -> dict[str, np.ndarray] | None:
  if not os.path.exists(path):
    return None
  with np.load(path) as npz:
    return {k: npz[k] for k in npz.files}


def best_and_baseline(results: dict[str, dict], metric: str) -> tuple[str, str | None]:
  """The learner with the highest last-step `metric`, and the one to show beside it: the
  best baseline (the best learner that is not meta-learned), or where the best is itself
  a baseline, the best meta-learned learner (None if there is no other). The trivial
  signal mean is neither (it has no field to fly through) unless it is the only learner."""
  known = lambda n: learners.BY_NAME.get(learners.canonical(n))
  last = {n: float(np.asarray(r['curves'][metric], float)[-1]) for n, r in results.items()
          if metric in r['curves'] and getattr(known(n), 'group', '') != 'Mean'}
  last = {n: v for n, v in last.items() if not np.isnan(v)}
  if not last:
    return next(iter(results)), None
  best = max(last, key=last.get)
  others = [n for n in last if n != best and meta_learned(n) != meta_learned(best)]
  return best, (max(others, key=last.get) if others else None)


def meta_learned(name: str | None) -> bool:
  """Whether a learner key is meta-learned (unknown keys count as meta-learned)."""
  known = learners.BY_NAME.get(learners.canonical(name or ''))
  return known is None or known.meta_learned


def write_scene_figures(workdir: str, modality: Modality, results: dict[str, dict],
                        shown: Episode, metric: str) -> list[str]:
  """The side-by-side fly-through and the modality's figures of each shown signal, from
  what `save_flythroughs` kept; returns the paths written (none where nothing was kept,
  e.g. a cached evaluation without its renders)."""
  written = []
  steps = next(iter(results.values()))['steps']
  best, baseline = best_and_baseline(results, metric)
  results_dir = os.path.join(workdir, 'results')
  figure_visuals = getattr(modality, 'figure_visuals', None)
  for i in range(len(shown.query_y)):
    npz = lambda kind, n: _load_npz(os.path.join(results_dir, f'{n}_{kind}_{i}.npz'))
    pair = [n for n in (best, baseline) if n is not None and npz('flythrough', n)]
    if pair:
      last = lambda n: float(np.asarray(results[n]['curves'][metric], float)[-1])
      role = {best: 'best', baseline: 'best meta-learned' if meta_learned(baseline)
              else 'best baseline'}
      unit = figures.METRIC_UNITS.get(metric, metric.upper())
      labels = {n: f'{display_name(n)}: {role[n]}, {last(n):.1f} {unit}' for n in pair}
      spec = Animation(suffix=f'_{i}', truth=None,
                       recons={n: npz('flythrough', n)['frames'] / 255.0 for n in pair},
                       min_height=FLYTHROUGH_MIN_HEIGHT, frame_ms=FLYTHROUGH_FRAME_MS,
                       labels=labels, formats=('gif', 'mp4'))
      stem = os.path.join(workdir, 'flythrough')
      written += figures.draw(stem, spec)
    kept = {n: npz('figure', n) for n in results}
    kept = {n: k for n, k in kept.items() if k is not None}
    if figure_visuals is None or not kept:
      continue
    data = {k[len('data_'):]: v for k, v in next(iter(kept.values())).items()
            if k.startswith('data_')}
    episode = jax.tree_util.tree_map(lambda x, i=i: np.asarray(x[i]), shown)
    for visual in figure_visuals(i, episode, {n: k['render'] for n, k in kept.items()},
                                 data, int(steps[-1]), best):
      written += figures.draw(os.path.join(workdir, 'scene'), visual)
  return written


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
  notes = {name: test_time_rule(r) for name, r in results.items()
           if method_group(name) != 'Mean'}      # the trivial row adapts nothing
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
    write_scene_figures(workdir, modality, results, shown, main_metric)


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
