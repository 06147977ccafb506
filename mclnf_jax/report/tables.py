"""The paper's tables as Markdown and CSV: Table 1 (metric per method at the first,
best and last step) and Table 6 (cost per method), the curve summaries behind them, and
the long-format CSV of every curve (the record is described in `report.curves`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from mclnf_jax import files, learners
from mclnf_jax.errors import UserError
from mclnf_jax.report.curves import Curves, as_datasets, curve_values

# ----------------------------------------------------------------- methods ---

# Method names, groups and order come from the registry (`mclnf_jax.learners.METHODS`);
# keys it does not know are shown as they are, under "Other", after the known ones.
OTHER_GROUP = 'Other'
GROUP_NAMES = {**learners.GROUPS, OTHER_GROUP: OTHER_GROUP}
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    g: tuple(m.name for m in learners.METHODS if m.group == g) for g in learners.GROUPS}
DISPLAY_NAMES = {m.name: m.display for m in learners.METHODS}
METRIC_NAMES = {'psnr': 'PSNR', 'ssim': 'SSIM', 'pesq': 'PESQ', 'iou': 'IoU', 'mse': 'MSE'}
# Decimals printed per metric; others use DEFAULT_DECIMALS.
METRIC_DECIMALS = {'ssim': 3, 'iou': 3, 'mse': 4}
DEFAULT_DECIMALS = 2
# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({'mse', 'loss', 'lpips'})
NA = 'n/a'

_METHOD_ORDER = [m for methods in METHOD_GROUPS.values() for m in methods]


def display_name(method: str) -> str:
  """The paper's name for a method key ('modular' -> 'Ours (mod)'); unknown keys as is."""
  return DISPLAY_NAMES.get(learners.canonical(method), method)


def method_group(method: str) -> str:
  """The group ('OL', 'CL', 'CML', 'MOL', 'MCL' or 'Other') a method key belongs to."""
  known = learners.BY_NAME.get(learners.canonical(method))
  return known.group if known else OTHER_GROUP


def order_methods(methods: Sequence[str]) -> list[str]:
  """Methods in table order: known ones by group then paper order, unknown ones last."""
  unique = list(dict.fromkeys(methods))
  rank = lambda m: _METHOD_ORDER.index(learners.canonical(m))
  known = sorted((m for m in unique if learners.canonical(m) in _METHOD_ORDER), key=rank)
  return known + [m for m in unique if learners.canonical(m) not in _METHOD_ORDER]


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
                decimals: int | None = None,
                notes: Mapping[str, str] | None = None) -> None:
  """Writes the paper's Table 1 layout as `<stem>.md` and `<stem>.csv`.

  Rows are grouped OL / CL / CML / MOL / MCL (then Other), listing only methods
  that have `metric`; per dataset the columns are "Step 1 | Best (step) | Step
  <max>", with the best value of each column in bold and the second best
  underlined. Steps count test-time optimisation steps on each task (the paper's
  images, video and audio convention; offline methods take them on the whole signal),
  the same for every method, and the header says so. `notes` (method -> text, e.g. its
  test-time optimiser) follow the method's name. Give one dataset's `curves`, or
  `datasets` (name -> curves) to put several side by side. The CSV has one row per
  dataset and method.
  """
  by_dataset = as_datasets(curves, datasets)
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
  files.write_text(stem + '.md', _table_markdown(steps, summaries, methods, metric,
                                                 decimals, higher, notes or {}))
  files.write_csv(stem + '.csv', _TABLE_CSV_HEADER,
                  [_table_csv_row(name, m, metric, s[m])
                   for name, s in summaries.items() for m in methods])


def _summary_or_nan(steps: Sequence[int], curves: Curves, method: str,
                    metric: str, higher: bool) -> Summary:
  """The curve's summary, or all-NaN when the method lacks the metric here."""
  values = curve_values(steps, curves, method, metric)
  if values is None:
    return Summary(math.nan, math.nan, None, math.nan)
  return summarize(steps, values, higher)


def _table_markdown(steps: Sequence[int], summaries: Mapping[str, Mapping[str, Summary]],
                    methods: Sequence[str], metric: str, decimals: int,
                    higher: bool, notes: Mapping[str, str]) -> str:
  """The Markdown body of `write_table`."""
  metric_label = f'Metric ({METRIC_NAMES.get(metric, metric)})'
  subheader = [f'Step {steps[0]}', 'Best (step)', f'Step {steps[-1]}']
  header = [metric_label, 'steps per task'] + subheader * len(summaries)
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
    label = display_name(m) + (f' ({notes[m]})' if m in notes else '')
    rows.append([group if group != previous else '', label] + cells[m])
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
  for name, c in as_datasets(curves, datasets).items():
    for m in order_methods(list(c)):
      for metric in c[m]:
        values = curve_values(steps, c, m, metric)
        rows += [[name, m, metric, int(s), repr(float(v))]
                 for s, v in zip(steps, values)]
  files.write_csv(path, ('dataset', 'method', 'metric', 'step', 'value'), rows)


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
  files.write_text(stem + '.md', _markdown(table))
  files.write_csv(stem + '.csv',
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
