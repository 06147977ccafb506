"""Sweeps: the main command once per point of a grid of config values, then one table.

python -m launch.sweep --config=configs/quickstart.py --workdir=DIR \
    --sweep='meta.lr=1e-4,1e-3' --sweep='eval.max_steps=16,32' [--config.x=y ...] \
    [--slurm | --summarize]

The grid is the product of the --sweep values (the last --sweep varies fastest); values
are split at commas, or at semicolons when a value holds commas itself
(`--sweep='learners=ol,modular;modular'`), and each is parsed as `--config.<key>=<value>`
would be. Point i runs in DIR/<key>=<value>,<key>=<value> as

  python -m mclnf_jax.main --config=<config> --workdir=DIR/<point> [--config.x=y ...]
      --config.<key>=<value> ...

a subprocess, one after another; a point whose learners all have cached results of its
config is skipped, and a point that stopped half-way resumes (experiment.run does both).
DIR/sweep.md and DIR/sweep.csv then hold one row per point: its values and each learner's
metrics after 1 step and after the last step per task. --slurm writes (and submits, when
`sbatch` is on the PATH) DIR/sweep_array.sbatch, a job array whose task i runs point i,
from the template launch/slurm/sweep_array.sbatch, and prints the --summarize command
that builds the table once the array has run. Every point's flags are parsed and checked
before anything runs: a bad one is a one-line error and exit status 2.
"""
import hashlib
import itertools
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import NamedTuple

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from mclnf_jax import evaluate, files, identity, learners, tuning
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError
from mclnf_jax.report import tables
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality


def define_flags() -> None:
  """The command's flags, defined when it runs as a program (the tests import this
  module beside other launch modules that define `--config` too)."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Sweep folder: one subfolder per point, sweep.md/.csv.')
  flags.DEFINE_multi_string('sweep', [], 'KEY=V1,V2,... (or V1;V2 when values hold commas): '
                            'one axis of the grid; repeat for more axes.')
  flags.DEFINE_bool('slurm', False, 'Write (and submit if sbatch is found) a SLURM job array '
                    'instead of running the points here.')
  flags.DEFINE_bool('summarize', False, 'Only write DIR/sweep.md and DIR/sweep.csv from the '
                    'results present.')
  flags.mark_flags_as_required(['config', 'workdir'])


TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'slurm',
                        'sweep_array.sbatch')
SCRIPT = 'sweep_array.sbatch'
MAX_NAME = 120    # longer point names are cut and end with a hash of the whole name
_UNSAFE = re.compile(r'[^A-Za-z0-9._=,+-]')


class Axis(NamedTuple):
  """One --sweep flag: a config key and the values (as typed) it takes."""
  key: str
  values: tuple[str, ...]


class Point(NamedTuple):
  """One run of the grid: its index, values, folder, parsed config and main's flags."""
  index: int
  values: dict
  workdir: str
  config: ml_collections.ConfigDict
  args: tuple[str, ...]    # --config=..., overrides, swept values (no --workdir)


# ------------------------------------------------------------------ the grid ---


def parse_axis(spec: str) -> Axis:
  """'meta.lr=1e-4,1e-3' -> Axis('meta.lr', ('1e-4', '1e-3')); one-line errors."""
  key, eq, text = spec.partition('=')
  key = key.strip().removeprefix('config.')
  example = "--sweep='meta.lr=1e-4,1e-3'"
  if not eq or not key:
    raise UserError(f'--sweep={spec} is not KEY=V1,V2,...: write e.g. {example}')
  problem = checks.unknown_key_problem(['', f'--config.{key}=x'])
  if problem:
    raise UserError(f'--sweep={spec}: {problem}')
  values = tuple(v.strip() for v in text.split(';' if ';' in text else ','))
  if not text.strip() or '' in values:
    raise UserError(f'--sweep={spec} has an empty value: give KEY=V1,V2,... (e.g. {example})')
  if len(set(values)) < len(values):
    raise UserError(f'--sweep={spec} repeats a value: give each value once')
  return Axis(key, values)


def parse_axes(specs: list[str], overrides: list[str]) -> list[Axis]:
  """The --sweep flags as axes; a key swept twice or also set by an override is an error."""
  if not specs:
    raise UserError("no --sweep: give at least one, e.g. --sweep='meta.lr=1e-4,1e-3'")
  axes, fixed = [], {_override_key(o) for o in overrides}
  for spec in specs:
    axis = parse_axis(spec)
    if axis.key in {a.key for a in axes}:
      raise UserError(f'config.{axis.key} is swept twice: merge its --sweep flags into one')
    if axis.key in fixed:
      raise UserError(f'config.{axis.key} is both swept and set by --config.{axis.key}: '
                      'drop one of them')
    axes.append(axis)
  return axes


def grid(axes: list[Axis]) -> list[dict]:
  """Every combination of the axes' values, {key: value}, the last axis varying fastest."""
  keys = [a.key for a in axes]
  return [dict(zip(keys, combo)) for combo in itertools.product(*(a.values for a in axes))]


def point_name(values: dict) -> str:
  """The folder of a point: 'meta.lr=1e-4,eval.max_steps=16', characters a path or a
  shell would trip on replaced by '_', cut to MAX_NAME characters plus a hash."""
  name = ','.join(f'{k}={v}' for k, v in values.items())
  safe = _UNSAFE.sub('_', name)
  if len(safe) > MAX_NAME:
    safe = safe[:MAX_NAME - 9] + '-' + hashlib.sha1(name.encode()).hexdigest()[:8]
  return safe


def _override_key(flag: str) -> str:
  """'--config.meta.lr=1e-3' or '--noconfig.meta.first_order' -> 'meta.lr'."""
  return re.sub(r'^-{1,2}(no)?config\.', '', flag.split('=', 1)[0])


def base_overrides(argv: list[str]) -> list[str]:
  """The --config.x=y flags of a command line, each as one token, in their order."""
  out, i = [], 1
  while i < len(argv):
    arg = argv[i]
    if re.match(r'^-{1,2}(no)?config\.', arg):
      if '=' not in arg and i + 1 < len(argv) and not argv[i + 1].startswith('-'):
        arg, i = f'{arg}={argv[i + 1]}', i + 1
      out.append(arg)
    i += 1
  return out


def load_config(argv: list[str]) -> ml_collections.ConfigDict:
  """The config `python -m mclnf_jax.main <argv[1:]>` would run, parsed by the same flag
  machinery (ml_collections' --config and its overrides) and checked as experiment.run
  checks it before writing anything (checks.check, then building its learners)."""
  problem = checks.unknown_key_problem(argv)
  if problem:
    raise UserError(problem)
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  try:
    flag_values(argv)
    config = flag_values['config'].value
  except Exception as e:  # pylint: disable=broad-except
    lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
    raise UserError(lines[-1] if 'Traceback' in str(e) else lines[0]) from None
  checks.check(config)
  spec = task_spec(make_modality(config))
  for name in learners.names(config):   # what experiment.run builds before it writes
    learners.build(config, name, spec)
  return config


def plan(config_file: str, overrides: list[str], axes: list[Axis], workdir: str) -> list[Point]:
  """Every point of the grid with its parsed and checked config; nothing is written."""
  points, names = [], {}
  for index, values in enumerate(grid(axes)):
    name = point_name(values)
    if name in names:
      raise UserError(f'points {names[name]} and {index} both get the folder {name}: '
                      'give values that differ in letters or digits')
    names[name] = index
    swept = [f'--config.{k}={v}' for k, v in values.items()]
    argv = ['mclnf_jax.main', f'--config={config_file}', *overrides, *swept]
    try:
      config = load_config(argv)
    except UserError as e:
      raise UserError(f'sweep point {index} ({name}): {e}') from None
    points.append(Point(index, values, os.path.join(workdir, name), config, tuple(argv[1:])))
  return points


# --------------------------------------------------------------- the runs ---


def results(point: Point) -> dict:
  """{learner: its cached evaluation result} for the results of this point's config
  (the check evaluate.evaluate_learner makes before it skips a learner)."""
  config = tuning.apply(point.config, point.workdir)
  found = {}
  for name in learners.names(config):
    path = os.path.join(point.workdir, 'results', f'{name}.json')
    if os.path.exists(path):
      cached = evaluate.read_cached(path)
      if cached['identity'] == identity.eval_identity(config, name):
        found[name] = cached
  return found


def is_complete(point: Point) -> bool:
  return len(results(point)) == len(learners.names(point.config))


def main_command(point: Point) -> list[str]:
  """The command line that runs one point."""
  return [sys.executable, '-m', 'mclnf_jax.main', *point.args, f'--workdir={point.workdir}']


def run_points(points: list[Point], after_each=lambda failed: None) -> dict:
  """Runs the incomplete points one after another, calling `after_each(failed)` after
  each run; returns {index: exit status} of the failed ones."""
  failed = {}
  for point in points:
    label = f'point {point.index + 1}/{len(points)} {os.path.basename(point.workdir)}'
    if is_complete(point):
      logging.info('%s: complete, skipped', label)
      continue
    logging.info('%s: %s', label, shlex.join(main_command(point)))
    status = subprocess.run(main_command(point), check=False).returncode
    if status:
      logging.error('%s: exit status %d', label, status)
      failed[point.index] = status
    after_each(failed)
  return failed


# --------------------------------------------------------------- the table ---


def _status(point: Point, found: dict, failed: dict) -> str:
  if point.index in failed:
    return f'failed ({failed[point.index]})'
  n = len(learners.names(point.config))
  return 'done' if len(found) == n else 'missing' if not found else f'partial {len(found)}/{n}'


def summary_rows(points: list[Point], failed: dict | None = None) -> list[dict]:
  """Per point: index, name, values, status, last step and {(learner, metric): (value at
  step 1, value at the last step)} of the results present."""
  rows = []
  for point in points:
    found = results(point)
    cells = {(name, metric): (curve[0], curve[-1])
             for name, r in found.items() for metric, curve in r['curves'].items()}
    last = max((r['steps'][-1] for r in found.values()), default=None)
    rows.append({'index': point.index, 'name': os.path.basename(point.workdir),
                 'values': point.values, 'status': _status(point, found, failed or {}),
                 'last_step': last, 'cells': cells})
  return rows


def _columns(rows: list[dict]) -> tuple[list[str], list[str]]:
  """Learners (table order) and metrics (sorted) found in any row."""
  names = tables.order_methods([n for r in rows for n, _ in r['cells']])
  return names, sorted({m for r in rows for _, m in r['cells']})


def _number(value: float | None, metric: str) -> str:
  if value is None or math.isnan(value):
    return tables.NA
  return f'{value:.{tables.METRIC_DECIMALS.get(metric, tables.DEFAULT_DECIMALS)}f}'


def _best_last(rows: list[dict], name: str, metric: str) -> float | None:
  values = [r['cells'][(name, metric)][1] for r in rows if (name, metric) in r['cells']]
  values = [v for v in values if not math.isnan(v)]
  if not values:
    return None
  return min(values) if metric in tables.LOWER_IS_BETTER else max(values)


def summary_markdown(rows: list[dict], axes: list[Axis], title: str) -> str:
  """One table per metric: a row per point, a column per learner, 'step 1 -> last'."""
  names, metrics = _columns(rows)
  keys = [a.key for a in axes]
  text = [f'# Sweep: {title}', '',
          f'{len(rows)} points ({" x ".join(keys)}). Each learner\'s cell: the metric after '
          '1 step per task -> after the last step (column "steps"); bold: the best last '
          'value of the column.', '']
  for metric in metrics:
    lines = [['#', *keys, 'status', 'steps', *map(tables.display_name, names)]]
    for r in rows:
      cells = []
      for name in names:
        first, last = r['cells'].get((name, metric), (None, None))
        shown = _number(last, metric)
        if last is not None and last == _best_last(rows, name, metric):
          shown = f'**{shown}**'
        cells.append(f'{_number(first, metric)} -> {shown}' if first is not None else tables.NA)
      lines.append([str(r['index']), *(r['values'][k] for k in keys), r['status'],
                    str(r['last_step'] or ''), *cells])
    text += [f'## {tables.METRIC_NAMES.get(metric, metric)}', '']
    text += ['| ' + ' | '.join(line) + ' |' for line in lines[:1]]
    text += ['|' + '---|' * len(lines[0])]
    text += ['| ' + ' | '.join(line) + ' |' for line in lines[1:]] + ['']
  return '\n'.join(text)


def write_summary(workdir: str, points: list[Point], axes: list[Axis], title: str,
                  failed: dict | None = None) -> str:
  """Writes DIR/sweep.md and DIR/sweep.csv (columns <learner>/<metric>/step1 and /last);
  returns the Markdown."""
  rows = summary_rows(points, failed)
  names, metrics = _columns(rows)
  keys = [a.key for a in axes]
  pairs = [(n, m) for n in names for m in metrics]
  header = ['index', 'point', *keys, 'status', 'last_step']
  header += [f'{n}/{m}/{which}' for n, m in pairs for which in ('step1', 'last')]
  lines = []
  for r in rows:
    numbers = []
    for pair in pairs:
      numbers += [repr(float(v)) for v in r['cells'][pair]] if pair in r['cells'] else ['', '']
    lines.append([r['index'], r['name'], *(r['values'][k] for k in keys), r['status'],
                  r['last_step'] or '', *numbers])
  files.write_csv(os.path.join(workdir, 'sweep.csv'), header, lines)
  markdown = summary_markdown(rows, axes, title)
  files.write_text(os.path.join(workdir, 'sweep.md'), markdown)
  return markdown


# ------------------------------------------------------------------- SLURM ---


def _array_spec(indices: list[int]) -> str:
  """[0, 1, 2, 5] -> '0-2,5' (sbatch --array)."""
  runs = []
  for i in indices:
    if runs and runs[-1][1] == i - 1:
      runs[-1][1] = i
    else:
      runs.append([i, i])
  return ','.join(str(a) if a == b else f'{a}-{b}' for a, b in runs)


def slurm_script(points: list[Point], workdir: str, name: str) -> str:
  """The job array script of `points` (the incomplete ones): task i runs point i (`srun` +
  its main command). Resources are the template's (or sbatch's own flags)."""
  with open(TEMPLATE, encoding='utf-8') as f:
    template = f.read()
  cases = '\n'.join(f'  {p.index}) srun {shlex.join(main_command(p))} ;;' for p in points)
  fill = {'@NAME@': _UNSAFE.sub('_', name), '@ARRAY@': _array_spec([p.index for p in points]),
          '@CHDIR@': os.getcwd(), '@LOGS@': os.path.abspath(os.path.join(workdir, 'slurm')),
          '@CASES@': cases}
  for key, value in fill.items():
    template = template.replace(key, value)
  return template


def submit(script: str, workdir: str) -> str:
  """Writes DIR/sweep_array.sbatch; submits it when sbatch is found. Returns what to
  tell the user."""
  path = os.path.join(workdir, SCRIPT)
  os.makedirs(os.path.join(workdir, 'slurm'), exist_ok=True)   # sbatch --output's folder
  files.write_text(path, script)
  if not shutil.which('sbatch'):
    return f'wrote {path}; submit it with: sbatch {path}'
  done = subprocess.run(['sbatch', path], capture_output=True, text=True, check=False)
  if done.returncode:
    raise UserError(f'sbatch {path} failed: {(done.stderr or done.stdout).strip()}')
  return f'wrote {path}; {done.stdout.strip()}'


# --------------------------------------------------------------------- main ---


def summarize_command(config_file: str, workdir: str, specs: list[str],
                      overrides: list[str]) -> str:
  return shlex.join([sys.executable, '-m', 'launch.sweep', f'--config={config_file}',
                     f'--workdir={workdir}', *(f'--sweep={s}' for s in specs), *overrides,
                     '--summarize'])


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  try:
    config_file, workdir = FLAGS['config'].config_filename, FLAGS.workdir
    overrides = base_overrides(sys.argv)
    axes = parse_axes(FLAGS.sweep, overrides)
    points = plan(config_file, overrides, axes, workdir)
    title = f'{config_file}, {FLAGS.config.get("name", "")}'.rstrip(', ')
    if FLAGS.slurm:
      todo = [p for p in points if not is_complete(p)]
      name = f'sweep-{FLAGS.config.get("name", "")}'
      print(submit(slurm_script(todo, workdir, name), workdir) if todo else
            f'every point of {workdir} is complete: nothing to submit')
      print('when the array has run, the table: '
            + summarize_command(config_file, workdir, FLAGS.sweep, overrides))
      return
    failed = {}
    if not FLAGS.summarize:
      failed = run_points(points, lambda f: write_summary(workdir, points, axes, title, f))
    print(write_summary(workdir, points, axes, title, failed))
    if failed:
      print(f'error: {len(failed)} of {len(points)} points failed: '
            f'{", ".join(str(i) for i in failed)} (their logs are above)', file=sys.stderr)
      sys.exit(1)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=checks.flags_parser)
