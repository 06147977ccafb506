"""Host-side reporting: the paper's tables (Markdown + CSV), curves, figures.

The curve record
----------------
Evaluation gives, for every method, the metric after k test-time optimisation
steps, for the shared list of evaluated steps (1, 2, 4, ..., max)::

  steps = [1, 2, 4, ..., 4096]              # shared by every method and metric
  curves = {                                # `Curves`: method -> metric -> values
      'mcl': {'psnr': np.array([...]), 'ssim': np.array([...])},
      'er': {'psnr': np.array([...])},
  }

`curves[method][metric][i]` is the value at `steps[i]`; NaN marks a value that
could not be computed (the tables print "n/a"). Method keys are the learner
names (`ol`, `cl`, `er`, ...); unknown keys are reported under the group "Other".
Several datasets side by side (as in the paper's Table 1) are a mapping
dataset name -> `Curves`, passed as `datasets=` instead of `curves`.

Every file is written atomically (temp file in the same folder, then
`os.replace`), so a crash never leaves a half-written report. Figures use the Agg
canvas directly and never open a window.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mclnf_jax.errors import UserError

Curves = Mapping[str, Mapping[str, np.ndarray]]

# The paper's method groups, in table order, with the methods of each in order.
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    'OL': ('ol',),
    'CL': ('cl', 'er', 'ewc', 'meil_nerf'),
    'CML': ('mer',),
    'MOL': ('mol',),
    'MCL': ('maml_cl', 'oml', 'mcl', 'mcl_fim'),
}
OTHER_GROUP = 'Other'
GROUP_NAMES = {
    'OL': 'Offline Learning',
    'CL': 'Continual Learning',
    'CML': 'Continual Meta-Learning',
    'MOL': 'Meta-Offline Learning',
    'MCL': 'Meta-Continual Learning',
    OTHER_GROUP: OTHER_GROUP,
}
DISPLAY_NAMES = {
    'ol': 'OL', 'cl': 'CL', 'er': 'ER', 'ewc': 'EWC', 'meil_nerf': 'MEIL-NeRF',
    'mer': 'MER', 'mol': 'MOL', 'maml_cl': 'MAML+CL', 'oml': 'OML',
    'mcl': 'Ours (mod)', 'mcl_fim': 'Ours (MIM)',
}
METRIC_NAMES = {'psnr': 'PSNR', 'ssim': 'SSIM', 'pesq': 'PESQ'}
# Decimals printed per metric; others use DEFAULT_DECIMALS.
METRIC_DECIMALS = {'ssim': 3}
DEFAULT_DECIMALS = 2
# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({'mse', 'loss', 'lpips'})
NA = 'n/a'

_METHOD_ORDER = [m for methods in METHOD_GROUPS.values() for m in methods]


# ----------------------------------------------------------------- methods ---


def display_name(method: str) -> str:
  """The paper's name for a method key ('mcl' -> 'Ours (mod)'); unknown keys as is."""
  return DISPLAY_NAMES.get(method, method)


def method_group(method: str) -> str:
  """The group ('OL', 'CL', 'CML', 'MOL', 'MCL' or 'Other') a method key belongs to."""
  for group, methods in METHOD_GROUPS.items():
    if method in methods:
      return group
  return OTHER_GROUP


def order_methods(methods: Sequence[str]) -> list[str]:
  """Methods in table order: known ones by group then paper order, unknown ones last."""
  unique = list(dict.fromkeys(methods))
  known = sorted((m for m in unique if m in _METHOD_ORDER), key=_METHOD_ORDER.index)
  return known + [m for m in unique if m not in _METHOD_ORDER]


def _method_colors(methods: Sequence[str]) -> dict[str, tuple]:
  """A stable colour per method key, the same in every plot."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  cmap = colormaps['tab20']  # dark shades (even) first, then the light ones.
  extra = [m for m in methods if m not in _METHOD_ORDER]
  index = {m: i for i, m in enumerate(_METHOD_ORDER + extra)}
  return {m: cmap((2 * index[m]) % 20 + (2 * index[m] // 20) % 2) for m in methods}


# ------------------------------------------------------------------ inputs ---


def _as_datasets(curves: Curves | None,
                 datasets: Mapping[str, Curves] | None) -> dict[str, Curves]:
  """One dataset's `curves` or several `datasets` as dataset -> Curves."""
  if (curves is None) == (datasets is None):
    raise UserError('report: pass exactly one of `curves` (one dataset) or '
                    '`datasets` (name -> curves).')
  return {'': curves} if datasets is None else dict(datasets)


def _curve(steps: Sequence[int], curves: Curves, method: str,
           metric: str) -> np.ndarray | None:
  """The values of one method and metric as float64, or None when absent."""
  if metric not in curves.get(method, {}):
    return None
  values = np.asarray(curves[method][metric], np.float64).reshape(-1)
  if values.shape[0] != len(steps):
    raise UserError(
        f'report: {method}/{metric} has {values.shape[0]} values for {len(steps)} '
        'steps; give one value per evaluated step.')
  return values


# ------------------------------------------------------------------ writing ---


def _atomic_write(path: str | os.PathLike, write: Callable[[io.IOBase], None],
                  binary: bool = False) -> None:
  """Calls `write(file)` on a temp file beside `path`, then renames it into place."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f'.{os.path.basename(path)}.{uuid.uuid4().hex}.tmp')
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode, kwargs = ('wb', {}) if binary else ('w', {'encoding': 'utf-8', 'newline': ''})
    with os.fdopen(fd, mode, **kwargs) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _write_text(path: str | os.PathLike, text: str) -> None:
  """Writes UTF-8 text atomically."""
  _atomic_write(path, lambda f: f.write(text))


def _write_csv(path: str | os.PathLike, header: Sequence[str],
               rows: Sequence[Sequence[object]]) -> None:
  """Writes a header and rows as CSV, atomically."""
  def write(f):
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
  _atomic_write(path, write)


def _save_figure(path_png: str | os.PathLike, fig: Figure) -> None:
  """Renders a figure with Agg (no window, no pyplot state) to a PNG, atomically."""
  FigureCanvasAgg(fig)
  _atomic_write(path_png, lambda f: fig.savefig(f, format='png', dpi=fig.dpi),
                binary=True)


def _markdown(rows: Sequence[Sequence[str]]) -> str:
  """A Markdown table whose first row is the header."""
  lines = ['| ' + ' | '.join(rows[0]) + ' |',
           '|' + '|'.join('---' for _ in rows[0]) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows[1:]]
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- summaries ---


class Summary(NamedTuple):
  """Step-1 value, best value and its step, and last value of one curve."""
  step1: float
  best: float
  best_step: int | None  # None when every value is NaN.
  last: float


def summarize(steps: Sequence[int], values: Sequence[float],
              higher_is_better: bool = True) -> Summary:
  """Summarises a curve as (value at the first step, best, best step, last).

  NaN values are skipped when looking for the best; ties go to the earliest
  step. An all-NaN curve gives NaN values and best_step None.
  """
  values = np.asarray(values, np.float64).reshape(-1)
  if values.shape[0] != len(steps) or not len(steps):
    raise UserError(f'summarize: {values.shape[0]} values for {len(steps)} steps; '
                    'give one value per evaluated step.')
  finite = ~np.isnan(values)
  if not finite.any():
    return Summary(float(values[0]), math.nan, None, float(values[-1]))
  signed = np.where(finite, values if higher_is_better else -values, -np.inf)
  i = int(np.argmax(signed))
  return Summary(float(values[0]), float(values[i]), int(steps[i]), float(values[-1]))


def _rank_marks(values: Sequence[float], decimals: int,
                higher_is_better: bool) -> list[str]:
  """'best' / 'second' / '' per value, ranking the values as printed.

  Ties share a mark; NaN values get none.
  """
  rounded = [round(v, decimals) if not math.isnan(v) else None for v in values]
  distinct = sorted({v for v in rounded if v is not None}, reverse=higher_is_better)
  labels = dict(zip(distinct[:2], ('best', 'second')))
  return [labels.get(v, '') if v is not None else '' for v in rounded]


def _mark(text: str, mark: str) -> str:
  """Bold for the best cell, underline for the second best."""
  if mark == 'best':
    return f'**{text}**'
  if mark == 'second':
    return f'<u>{text}</u>'
  return text


def _fmt(value: float, decimals: int) -> str:
  """A fixed-decimals number, or 'n/a' for NaN."""
  return NA if math.isnan(value) else f'{value:.{decimals}f}'


# ------------------------------------------------------------------- tables ---


def write_table(path_stem: str | os.PathLike, steps: Sequence[int],
                curves: Curves | None, metric: str,
                datasets: Mapping[str, Curves] | None = None,
                decimals: int | None = None) -> None:
  """Writes the paper's Table 1 layout as `<stem>.md` and `<stem>.csv`.

  Rows are grouped OL / CL / CML / MOL / MCL (then Other), listing only methods
  that have `metric`; per dataset the columns are "Step 1 | Best (step) | Step
  <max>", with the best value of each column in bold and the second best
  underlined. Give one dataset's `curves`, or `datasets` (name -> curves) to put
  several side by side. The CSV has one row per dataset and method.
  """
  by_dataset = _as_datasets(curves, datasets)
  decimals = METRIC_DECIMALS.get(metric, DEFAULT_DECIMALS) if decimals is None else decimals
  higher = metric not in LOWER_IS_BETTER
  methods = order_methods([m for c in by_dataset.values() for m in c
                           if metric in c[m]])
  if not methods:
    raise UserError(f'write_table: no method has metric {metric!r}; check the '
                    'metric name against the curve record.')
  summaries = {
      name: {m: _summary_or_nan(steps, c, m, metric, higher) for m in methods}
      for name, c in by_dataset.items()}
  stem = os.fspath(path_stem)
  _write_text(stem + '.md', _table_markdown(steps, summaries, methods, metric,
                                            decimals, higher))
  _write_csv(stem + '.csv', _TABLE_CSV_HEADER,
             [_table_csv_row(name, m, metric, s[m])
              for name, s in summaries.items() for m in methods])


def _summary_or_nan(steps: Sequence[int], curves: Curves, method: str,
                    metric: str, higher: bool) -> Summary:
  """The curve's summary, or all-NaN when the method lacks the metric here."""
  values = _curve(steps, curves, method, metric)
  if values is None:
    return Summary(math.nan, math.nan, None, math.nan)
  return summarize(steps, values, higher)


def _table_markdown(steps: Sequence[int], summaries: Mapping[str, Mapping[str, Summary]],
                    methods: Sequence[str], metric: str, decimals: int,
                    higher: bool) -> str:
  """The Markdown body of `write_table`."""
  metric_label = f'Metric ({METRIC_NAMES.get(metric, metric)})'
  subheader = [f'Step {steps[0]}', 'Best (step)', f'Step {steps[-1]}']
  header = [metric_label, ''] + subheader * len(summaries)
  rows = [header]
  if any(summaries):  # named datasets get a row above the metric row.
    names = [x for name in summaries for x in (name, '', '')]
    rows = [['Dataset', ''] + names, header]
  cells = {m: [] for m in methods}
  for per_method in summaries.values():
    for column in _summary_columns(per_method, methods, decimals, higher):
      for m in methods:
        cells[m].append(column[m])
  previous = None
  for m in methods:
    group = method_group(m)
    rows.append([group if group != previous else '', display_name(m)] + cells[m])
    previous = group
  return _markdown(rows)


def _summary_columns(per_method: Mapping[str, Summary], methods: Sequence[str],
                     decimals: int, higher: bool) -> list[dict[str, str]]:
  """The marked cells of the Step 1, Best (step) and last-step columns."""
  columns = []
  for field in ('step1', 'best', 'last'):
    values = [getattr(per_method[m], field) for m in methods]
    marks = _rank_marks(values, decimals, higher)
    column = {}
    for m, value, mark in zip(methods, values, marks):
      text = _fmt(value, decimals)
      if field == 'best' and per_method[m].best_step is not None:
        text += f' ({per_method[m].best_step})'
      column[m] = _mark(text, mark)
    columns.append(column)
  return columns


_TABLE_CSV_HEADER = ('dataset', 'group', 'method', 'display', 'metric', 'step1',
                     'best', 'best_step', 'last')


def _table_csv_row(dataset: str, method: str, metric: str, s: Summary) -> list[object]:
  """One CSV row of `write_table`; NaN as 'nan', a missing best step as ''."""
  best_step = '' if s.best_step is None else s.best_step
  return [dataset, method_group(method), method, display_name(method), metric,
          repr(s.step1), repr(s.best), best_step, repr(s.last)]


def write_curves_csv(path: str | os.PathLike, steps: Sequence[int],
                     curves: Curves | None,
                     datasets: Mapping[str, Curves] | None = None) -> None:
  """Writes every value at every step, long format: dataset,method,metric,step,value."""
  rows = []
  for name, c in _as_datasets(curves, datasets).items():
    for m in order_methods(list(c)):
      for metric in c[m]:
        values = _curve(steps, c, m, metric)
        rows += [[name, m, metric, int(s), repr(float(v))]
                 for s, v in zip(steps, values)]
  _write_csv(path, ('dataset', 'method', 'metric', 'step', 'value'), rows)


# ------------------------------------------------------------ compute table ---


@dataclasses.dataclass(frozen=True)
class ComputeRow:
  """One row of the compute-cost table (the paper's Table 6)."""
  method: str
  parameters: int
  peak_memory_mib: float  # NaN when unknown (e.g. on CPU).
  tto_speed: float  # test-time optimisation episodes per second.
  metric_value: float


def write_compute_table(path_stem: str | os.PathLike,
                        rows: Sequence[ComputeRow | Mapping[str, object]],
                        metric: str = 'psnr') -> None:
  """Writes the paper's Table 6 layout (cost per method) as `<stem>.md` and `.csv`.

  `rows` are `ComputeRow`s or mappings with the same keys; they are listed in
  table order with the category named on the first row of each group.
  """
  rows = [r if isinstance(r, ComputeRow) else _compute_row(r) for r in rows]
  order = order_methods([r.method for r in rows])
  rows = sorted(rows, key=lambda r: order.index(r.method))
  label = METRIC_NAMES.get(metric, metric)
  arrow = '↓' if metric in LOWER_IS_BETTER else '↑'
  decimals = METRIC_DECIMALS.get(metric, DEFAULT_DECIMALS)
  table = [['Category', 'Method', 'Parameters (↓)', 'Peak memory (↓)',
            'TTO speed (↑)', f'{label} ({arrow})']]
  previous = None
  for r in rows:
    category = GROUP_NAMES[method_group(r.method)]
    table.append([category if category != previous else '', display_name(r.method),
                  _fmt_count(r.parameters), _fmt_unit(r.peak_memory_mib, 0, 'MiB'),
                  _fmt_unit(r.tto_speed, 2, 'ep/s'), _fmt(r.metric_value, decimals)])
    previous = category
  stem = os.fspath(path_stem)
  _write_text(stem + '.md', _markdown(table))
  _write_csv(stem + '.csv',
             ('category', 'method', 'display', 'parameters', 'peak_memory_mib',
              'tto_speed_eps', metric),
             [[GROUP_NAMES[method_group(r.method)], r.method, display_name(r.method),
               r.parameters, repr(float(r.peak_memory_mib)),
               repr(float(r.tto_speed)), repr(float(r.metric_value))] for r in rows])


def _compute_row(row: Mapping[str, object]) -> ComputeRow:
  """A ComputeRow from a mapping; UserError naming the missing or extra keys."""
  fields = {f.name for f in dataclasses.fields(ComputeRow)}
  if set(row) != fields:
    raise UserError(f'write_compute_table: row keys {sorted(row)} should be exactly '
                    f'{sorted(fields)}.')
  return ComputeRow(**row)


def _fmt_count(n: int) -> str:
  """198910 -> '198.91K', 2637836 -> '2.64M'."""
  if n >= 1e6:
    return f'{n / 1e6:.2f}M'
  if n >= 1e3:
    return f'{n / 1e3:.2f}K'
  return str(int(n))


def _fmt_unit(value: float, decimals: int, unit: str) -> str:
  """A number with its unit, or 'n/a' for NaN."""
  return NA if math.isnan(value) else f'{value:.{decimals}f} {unit}'


# ------------------------------------------------------------------ figures ---


def plot_curves(path_png: str | os.PathLike, steps: Sequence[int],
                curves: Curves | None, metric: str,
                datasets: Mapping[str, Curves] | None = None) -> None:
  """Plots metric against log2(step), one line per method (the paper's Fig. 2).

  One dataset's `curves` gives one panel; `datasets` gives one panel each.
  """
  by_dataset = _as_datasets(curves, datasets)
  methods = order_methods([m for c in by_dataset.values() for m in c if metric in c[m]])
  if not methods:
    raise UserError(f'plot_curves: no method has metric {metric!r}; check the '
                    'metric name against the curve record.')
  colors = _method_colors(methods)
  x = np.log2(np.asarray(steps, np.float64))
  fig = Figure(figsize=(4.2 * len(by_dataset) + 1.8, 3.4), dpi=100)
  axes = fig.subplots(1, len(by_dataset), squeeze=False)[0]
  for ax, (name, c) in zip(axes, by_dataset.items()):
    for m in methods:
      values = _curve(steps, c, m, metric)
      if values is not None:
        ax.plot(x, values, marker='o', markersize=3, color=colors[m],
                label=display_name(m))
    ax.set_title(name)
    ax.set_xlabel('log2(step)')
    ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    ax.set_xticks(x)
    ax.set_xticklabels([f'{v:g}' for v in x])
    ax.grid(alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  for ax in axes[1:]:  # methods absent from the first panel.
    for h, lab in zip(*ax.get_legend_handles_labels()):
      if lab not in labels:
        handles.append(h)
        labels.append(lab)
  fig.legend(handles, labels, loc='center right', fontsize='small')
  fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
  _save_figure(path_png, fig)


def image_grid(path_png: str | os.PathLike,
               ground_truth: np.ndarray | Sequence[np.ndarray],
               recons: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
               psnrs: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
               ) -> None:
  """Ground truth then each method's reconstruction, PSNR under each (Fig. 3).

  Images are [H, W, 3] (or [H, W] / [H, W, 1]) floats in [0, 1]. Pass lists of
  ground truths, recon dicts and PSNR dicts for several signals, one row each.
  """
  if hasattr(ground_truth, 'shape'):  # one signal (NumPy or JAX array).
    ground_truth, recons = [ground_truth], [recons]
    psnrs = None if psnrs is None else [psnrs]
  if psnrs is None:
    psnrs = [{} for _ in ground_truth]
  if not len(ground_truth) == len(recons) == len(psnrs):
    raise UserError(f'image_grid: {len(ground_truth)} ground truths, {len(recons)} '
                    f'recon dicts and {len(psnrs)} PSNR dicts; give one of each per row.')
  methods = order_methods([m for r in recons for m in r])
  n_rows, n_cols = len(ground_truth), len(methods) + 1
  fig = Figure(figsize=(1.8 * n_cols, 2.0 * n_rows), dpi=100)
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  for i, (gt, rec, ps) in enumerate(zip(ground_truth, recons, psnrs)):
    _show(axes[i, 0], gt, 'Ground truth' if i == 0 else '', '')
    for j, m in enumerate(methods, start=1):
      label = f'{ps[m]:.2f}' if m in ps and not math.isnan(ps[m]) else ''
      _show(axes[i, j], rec.get(m), display_name(m) if i == 0 else '', label)
  fig.tight_layout()
  _save_figure(path_png, fig)


def _show(ax, image: np.ndarray | None, title: str, below: str) -> None:
  """Draws one image (or an empty cell) with a title above and text below."""
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title, fontsize='small')
  if below:
    ax.set_xlabel(below, fontsize='small')
  if image is None:
    return
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise UserError(f'image_grid: image of shape {image.shape}; pass [H, W, 3] or '
                    '[H, W] arrays in [0, 1].')
  ax.imshow(image, cmap='gray' if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
            interpolation='nearest')


# ------------------------------------------------------------ a run's outputs ---


def save_flythroughs(modality, name: str, predict, states, signals, first: int,
                     results_dir: str) -> None:
  """Scenes: a GIF flown around each kept block, rendered from its adapted field."""
  if not hasattr(modality, 'flythrough_rays'):
    return
  predict = jax.jit(predict)
  for i, signal in enumerate(signals):
    state = jax.tree_util.tree_map(lambda x: x[i], states)
    rgb = np.asarray(predict(state, modality.flythrough_rays(signal)))
    modality.save_flythrough(os.path.join(results_dir, f'{name}_flythrough_{first + i}.gif'), rgb)


def write_report(workdir: str, modality, results: dict[str, dict], shown) -> None:
  """Tables, curves and reconstructions of a run; `shown`: the episodes of the signals drawn."""
  steps = next(iter(results.values()))['steps']
  curves = {name: {k: np.asarray(v) for k, v in r['curves'].items()}
            for name, r in results.items()}
  metrics = sorted({k for c in curves.values() for k in c})
  for metric in metrics:
    write_table(os.path.join(workdir, f'table_{metric}'), steps, curves, metric)
    plot_curves(os.path.join(workdir, f'curves_{metric}.png'), steps, curves, metric)
  write_curves_csv(os.path.join(workdir, 'curves.csv'), steps, curves)
  # Reconstructions at each method's best step (by the first metric), as in Fig. 3.
  main_metric = metrics[0] if 'psnr' not in metrics else 'psnr'
  truths = [modality.to_signal(y) for y in shown.query_y]
  recons, scores = [{} for _ in truths], [{} for _ in truths]
  for name, r in results.items():
    recon = np.load(os.path.join(workdir, 'results', f'{name}.npz'))['recon']
    best = int(np.nanargmax(r['curves'][main_metric]))
    for i in range(len(truths)):
      recons[i][name] = recon[i, best]
      scores[i][name] = r['per_signal'][main_metric][i][best]
  if len(truths):
    modality.save_visuals(os.path.join(workdir, 'reconstructions'), truths, recons, scores)
