"""Throughput of streams of small fields at 10, 100 and 1,000 tasks (`launch.stream --bench`).

Each learner learns the tasks of `sources.cells_image` (16 pixels a task) one after
another. At each mark n it reports the median wall time of the last `WINDOW` observes
that compiled nothing (the first task and each capacity doubling compile; their seconds
are summed apart, `compiling_s`) as ms and tasks per second, the median time of a query
of 4,096 points, the bytes of one expert (single networks: of the whole learner state)
and the compiles so far; then the ratio of the step cost at the last mark to the first.
Observes are timed to completion (`block_until_ready`): a time is a task's whole cost.
"""
import json
import time
from typing import Callable

import numpy as np

from mclnf_jax.configs import paper
from mclnf_jax.errors import UserError
from mclnf_jax.stream import Stream
from mclnf_jax.stream.sources import cells_image

MARKS = (10, 100, 1000)
WINDOW = 9         # observes timed before each mark
STEPS = 8          # test-time steps per task
WIDTHS = {'expert': 16, 'single': 32}


def bench_config():
  """The CPU image config with small fields: SIREN depth 3, experts 16 wide, single
  networks 32 wide."""
  c = paper.image('cpu')
  c.field.depth = 3
  for name in c.methods:
    c.methods[name].width = WIDTHS['expert' if name.startswith('modular') else 'single']
  return c


def query_ms(stream: Stream, x: np.ndarray, repeats: int = 5) -> float:
  """Median wall time of one query of x (after a first, compiling one), in ms."""
  stream.query(x)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    stream.query(x)
    times.append(time.perf_counter() - t0)
  return float(np.median(times) * 1e3)


def bench_learner(name: str, source, marks, log: Callable[[str], None]) -> list[dict]:
  stream = Stream(bench_config(), learner=name, modality=source.modality, steps=STEPS)
  times, compile_s, out = [], 0.0, []
  for i, task in enumerate(source.tasks[:marks[-1]]):
    compiles = sum(stream.traces.values())
    t0 = time.perf_counter()
    stream.observe(*task).block_until_ready()
    seconds = time.perf_counter() - t0
    if sum(stream.traces.values()) > compiles:
      compile_s += seconds                  # the first task and each capacity doubling
    else:
      times.append(seconds)
    if i + 1 in marks:
      step_ms = float(np.median(times[-WINDOW:]) * 1e3)
      row = {'learner': name, 'tasks': i + 1, 'ms_per_task': round(step_ms, 3),
             'tasks_per_s': round(1e3 / step_ms, 1), 'compiling_s': round(compile_s, 2),
             'query_ms': round(query_ms(stream, source.query_x), 2),
             'bytes_per_expert': stream.bytes_per_expert(), 'capacity': stream.capacity,
             'compiles': dict(stream.traces)}
      out.append(row)
      log(json.dumps(row))
  return out


def run(names, tasks: int, log: Callable[[str], None]) -> dict:
  """Benchmarks each learner; returns {name: rows} and logs one JSON line per mark and
  per learner the step-cost ratio of the last mark over the first."""
  source = cells_image()
  if not 1 <= tasks <= len(source.tasks):
    raise UserError(f'--bench_tasks={tasks}: the benchmark image has '
                    f'{len(source.tasks)} cells; give 1 to {len(source.tasks)}')
  marks = tuple(m for m in MARKS if m < tasks) + (tasks,)      # MARKS up to `tasks`
  results = {}
  for name in names:
    rows = bench_learner(name, source, marks, log)
    ratio = rows[-1]['ms_per_task'] / rows[0]['ms_per_task']
    log(json.dumps({'learner': name, 'step_cost_ratio':
                    f'{rows[-1]["tasks"]} / {rows[0]["tasks"]} tasks', 'ratio': round(ratio, 3)}))
    results[name] = rows
  return results
