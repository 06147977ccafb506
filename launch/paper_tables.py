"""Regenerates the paper's tables: meta-train, evaluate every learner, write Tables 1 and 6.

python -m launch.paper_tables --config=configs/quickstart.py --workdir=DIR \
    [--config.x=y ...] [--more_configs=configs/video_quickstart.py,configs/audio_quickstart.py]

Each config runs in DIR/<config.name>/ through the same `experiment.run` as the main job
(so a rerun skips what is done); then DIR gets the Table 1 layout with every dataset side
by side (table_<metric>.md/.csv), all curves (curves.csv), a Fig. 2-style plot per metric
and the Table 6 layout (compute_<name>.md/.csv: parameters, peak memory, TTO episodes/s).
`--config.*` overrides apply to --config; --more_configs run with their own settings.
"""
import importlib.util
import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from mclnf_jax import compute_cost, experiment, learners, logs, process, report
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality

config_flags.DEFINE_config_file('config', None, 'The main config (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Output folder (one subfolder per config).')
flags.DEFINE_list('more_configs', [], 'Further config files, each its own dataset column.')
flags.DEFINE_integer('tto_steps', 128, 'Steps per task of one TTO episode in Table 6.')
flags.mark_flags_as_required(['config', 'workdir'])


def load_config_file(path: str):
  """A config file as `--config` reads it: `configs/x.py` or `configs/x.py:variant`."""
  path, _, variant = str(path).partition(':')
  if not os.path.isfile(path):
    raise UserError(f'config file {path} does not exist (--more_configs)')
  spec = importlib.util.spec_from_file_location('extra_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise UserError(f'config file {path} has no get_config()')
  return module.get_config(variant) if variant else module.get_config()


def compute_rows(config, results: dict, workdir: str, tto_steps: int) -> list[dict]:
  """Table 6 rows for one config: cost of one TTO episode per learner (first test signal)."""
  modality = make_modality(config)
  signals = experiment.Signals(config, modality)
  episode = experiment.jax.tree_util.tree_map(lambda x: x[0],
                                              signals.episodes(signals.test()[:1]))
  rows = []
  for name in learners.names(config):
    learner = learners.build(config, name, task_spec(modality))
    params = experiment.meta_params(config, learner, os.path.join(workdir, name))
    steps = results[name]['steps']
    k = min(tto_steps, steps[-1])
    cost = compute_cost.tto_cost(learner, params, episode, k)
    metric = 'psnr' if 'psnr' in results[name]['curves'] else sorted(results[name]['curves'])[0]
    at_k = results[name]['curves'][metric][steps.index(k)] if k in steps else float('nan')
    rows.append({'method': name, 'parameters': cost['parameters'],
                 'peak_memory_mib': cost['peak_memory_mib'],
                 'tto_speed': cost['episodes_per_s'], 'metric_value': at_k})
    logging.info('table 6 %s: %s', name, json.dumps(rows[-1]))
  return rows


def main(argv):
  del argv
  logs.quiet_libraries()
  process.configure()
  FLAGS = flags.FLAGS
  try:
    configs = [FLAGS.config] + [load_config_file(p) for p in FLAGS.more_configs]
    per_dataset, steps = {}, None
    for config in configs:
      workdir = os.path.join(FLAGS.workdir, config.name)
      logging.info('=== %s -> %s', config.name, workdir)
      results = experiment.run(config, workdir, 'train_and_eval')
      per_dataset[config.name] = {n: {k: np.asarray(v) for k, v in r['curves'].items()}
                                  for n, r in results.items()}
      rows = compute_rows(config, results, workdir, FLAGS.tto_steps)
      report.write_compute_table(os.path.join(FLAGS.workdir, f'compute_{config.name}'), rows)
      run_steps = next(iter(results.values()))['steps']
      if steps is not None and run_steps != steps:
        raise UserError(f'{config.name} evaluates steps up to {run_steps[-1]} but the first '
                        f'config up to {steps[-1]}: give every config the same eval.max_steps')
      steps = run_steps
    metrics = sorted({m for c in per_dataset.values() for r in c.values() for m in r})
    for metric in metrics:
      with_metric = {d: c for d, c in per_dataset.items()
                     if any(metric in r for r in c.values())}
      report.write_table(os.path.join(FLAGS.workdir, f'table_{metric}'), steps, None, metric,
                         datasets=with_metric)
      report.plot_curves(os.path.join(FLAGS.workdir, f'curves_{metric}.png'), steps, None,
                         metric, datasets=with_metric)
    report.write_curves_csv(os.path.join(FLAGS.workdir, 'curves.csv'), steps, None,
                            datasets=per_dataset)
    logging.info('tables written to %s', FLAGS.workdir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=checks.flags_parser)
