"""What a streaming run writes: forgetting matrices (CSV, heat maps) and throughput.

A forgetting matrix has one row per measurement (after n tasks) and one column per task
in arrival order: the PSNR of task j after n tasks (empty while j has not arrived). Its
diagonal is how well a task is learnt, the fall down a column how much it is forgotten.
"""
import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mclnf_jax import files
from mclnf_jax.report.canvas import save_figure
from mclnf_jax.report.tables import display_name

Rows = Sequence[tuple[int, Sequence[float]]]     # (tasks seen, PSNR of each of them)


def matrix(rows: Rows, num_tasks: int) -> np.ndarray:
  """[len(rows), num_tasks] PSNR, NaN where a task had not arrived."""
  out = np.full((len(rows), num_tasks), np.nan)
  for i, (_, values) in enumerate(rows):
    out[i, :len(values)] = values
  return out


def forgetting(rows: Rows) -> float:
  """Mean over tasks of (PSNR at the first row after the task arrived - at the last row),
  the drop a task suffers from the tasks that follow it (0 for a modular learner)."""
  m = matrix(rows, len(rows[-1][1]))
  first = np.array([m[np.flatnonzero(~np.isnan(m[:, j]))[0], j] for j in range(m.shape[1])])
  return float(np.mean(first - m[-1]))


def write_matrix(folder: str, name: str, rows: Rows) -> str:
  """forgetting_<name>.csv: tasks_seen, then task_1 ... task_T (PSNR, '' if unseen)."""
  num = len(rows[-1][1])
  path = os.path.join(folder, f'forgetting_{name}.csv')
  files.write_csv(path, ['tasks_seen'] + [f'task_{j + 1}' for j in range(num)],
                  [[n] + [f'{v:.3f}' for v in values] + [''] * (num - len(values))
                   for n, values in rows])
  return path


def label(name: str) -> str:
  """The paper's name of a learner ('Ours (mod)'), with a capped run's cap and merge
  ('modular_cap16_distill': 'Ours (mod), cap 16, distill')."""
  base, _, cap = name.partition('_cap')
  return display_name(base) + (f', cap {cap.replace("_", ", ")}' if cap else '')


def write_heatmaps(path_png: str, runs: dict, title: str) -> None:
  """One heat map per learner side by side, on one colour scale (PSNR, dB)."""
  mats = {n: matrix(r['rows'], len(r['rows'][-1][1])) for n, r in runs.items()}
  values = np.concatenate([m[~np.isnan(m)] for m in mats.values()])
  low, high = np.percentile(values, 2), np.percentile(values, 98)
  fig = Figure(figsize=(3.6 * len(mats) + 0.8, 3.8), dpi=110, layout='constrained')
  axes = fig.subplots(1, len(mats), squeeze=False)[0]
  for ax, (name, m) in zip(axes, mats.items()):
    seen = [n for n, _ in runs[name]['rows']]
    shown = ax.imshow(np.ma.masked_invalid(m), aspect='auto', cmap='viridis', vmin=low,
                      vmax=high, interpolation='nearest',
                      extent=(0.5, m.shape[1] + 0.5, len(seen) - 0.5, -0.5))
    ticks = np.unique(np.linspace(0, len(seen) - 1, min(len(seen), 8)).round().astype(int))
    ax.set_yticks(ticks, [str(seen[i]) for i in ticks])
    ax.set_title(f'{label(name)}: forgetting {forgetting(runs[name]["rows"]):.2f} dB',
                 fontsize='medium')
    ax.set_xlabel('task (arrival order)')
    ax.set_ylabel('after this many tasks')
  fig.colorbar(shown, ax=list(axes), label='PSNR (dB)', shrink=0.9)
  fig.suptitle(title, fontsize='medium')
  save_figure(path_png, fig)


def throughput_rows(runs: dict) -> list[list]:
  header = ['learner', 'tasks/s', 'ms per query', 'bytes per expert', 'experts',
            'mean PSNR at the end', 'forgetting (dB)']
  rows = [header]
  for name, r in runs.items():
    final = r['rows'][-1][1]
    rows.append([label(name), f"{r['tasks_per_s']:.2f}", f"{r['query_ms']:.1f}",
                 str(r['bytes_per_expert']), str(r['experts']), f'{np.mean(final):.2f}',
                 f"{forgetting(r['rows']):.2f}"])
  return rows


def write_throughput(folder: str, runs: dict, description: str, query: str) -> None:
  """throughput.json (every number) and throughput.md (a table)."""
  summary = {n: {k: v for k, v in r.items() if k != 'rows'} | {
      'forgetting_db': forgetting(r['rows']), 'mean_psnr_end': float(np.mean(r['rows'][-1][1]))}
             for n, r in runs.items()}
  files.write_json(os.path.join(folder, 'throughput.json'),
                   {'stream': description, 'query': query, 'learners': summary})
  rows = throughput_rows(runs)
  lines = [f'{description}; a query is {query}.', '',
           '| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
  files.write_text(os.path.join(folder, 'throughput.md'), '\n'.join(lines) + '\n')
