"""Command line: `python -m mclnf_jax.main --config=configs/quickstart.py --workdir=DIR`.

Any config key can be overridden, e.g. `--config.meta.steps=200`; sweeps are loops over
such flags (see launch/); CONFIG.md lists every key. Errors a user can fix (an unknown
key, a missing config file, a bad value or input) print one line `error: ...` on stderr
and exit with status 2.

Many devices and hosts (README "Many devices and hosts"): one process per host (or per
GPU) runs this same command with `--distributed`, which joins them before any JAX
operation; SLURM (`srun`), Open MPI (`mpirun`) and TPU VMs are detected, anything else
names `--coordinator_address`, `--num_processes` and `--process_id`. The mesh is
`config.mesh` (default: every device of every process on the data axis).
"""
import os
import sys

import jax

from absl import app, flags, logging
from ml_collections import config_flags

from mclnf_jax import distributed, experiment, logs, process
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError

config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, results, tables and figures.')
flags.DEFINE_enum('mode', 'train_and_eval', list(experiment.MODES),
                  'train: meta-train; eval: evaluate saved runs; train_and_eval: both.')
flags.DEFINE_bool('distributed', False,
                  'Join a multi-process run (jax.distributed.initialize) before anything else; '
                  'SLURM, Open MPI and TPU VMs are detected, else give the three flags below.')
flags.DEFINE_string('coordinator_address', '',
                    'HOST:PORT of process 0 (with --distributed; default: detected or '
                    '$JAX_COORDINATOR_ADDRESS).')
flags.DEFINE_integer('num_processes', None, 'Processes in the run (with --distributed).')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1 (with --distributed).')
flags.DEFINE_integer('distributed_timeout', 300,
                     'Seconds to wait for every process to join (with --distributed).')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  logs.quiet_libraries()
  process.configure()
  jax.config.update('jax_compilation_cache_dir',
                    os.path.expanduser('~/.cache/mclnf_jax/xla'))
  f = flags.FLAGS
  config = f.config
  workdir = f.workdir or os.path.join('workdir', config.get('name', 'run'))
  logging.info('workdir: %s', workdir)
  try:
    if f.distributed:
      distributed.initialize(f.coordinator_address, f.num_processes, f.process_id,
                             f.distributed_timeout)
    experiment.run(config, workdir, f.mode)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def entry():
  app.run(main, flags_parser=checks.flags_parser)


if __name__ == '__main__':
  entry()
