"""Command line: `python -m mclnf_jax.main --config=configs/quickstart.py --workdir=DIR`.

Any config key can be overridden, e.g. `--config.meta.steps=200`; sweeps are loops over
such flags (see launch/); CONFIG.md lists every key. Errors a user can fix (an unknown
key, a missing config file, a bad value or input) print one line `error: ...` on stderr
and exit with status 2.
"""
import os
import sys

import jax

from absl import app, flags, logging
from ml_collections import config_flags

from mclnf_jax import experiment, logs, process
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError

config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, results, tables and figures.')
flags.DEFINE_enum('mode', 'train_and_eval', list(experiment.MODES),
                  'train: meta-train; eval: evaluate saved runs; train_and_eval: both.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  logs.quiet_libraries()
  process.limit_blas_threads()
  jax.config.update('jax_compilation_cache_dir',
                    os.path.expanduser('~/.cache/mclnf_jax/xla'))
  config = flags.FLAGS.config
  workdir = flags.FLAGS.workdir or os.path.join('workdir', config.get('name', 'run'))
  logging.info('workdir: %s', workdir)
  try:
    experiment.run(config, workdir, flags.FLAGS.mode)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def entry():
  app.run(main, flags_parser=checks.flags_parser)


if __name__ == '__main__':
  entry()
