"""Chooses every learner's test-time settings by one rule (mclnf_jax/tuning.py).

python -m launch.tune_tto --config=configs/quickstart.py --workdir=DIR \
    [--opts=sgd,adam] [--lrs=1e-4,1e-3,1e-2,1e-1] [--max_steps=0] [--noknobs]

Meta-trains what is missing (as the main command would), evaluates each learner on the
meta-validation signals with every (optimiser, rate) of the grid, the same for all, then
at the chosen pair each setting of the learner's own knob grid (tuning.KNOBS: EWC's
lambda, ER's replay ratio, MER's beta and gamma, MEIL-NeRF's weight; at most
tuning.KNOB_BUDGET each; --noknobs skips this stage), and writes DIR/tto.json;
`python -m mclnf_jax.main` with the same --workdir then evaluates with those settings.
--max_steps=0 uses config.eval.max_steps.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mclnf_jax import experiment, learners, logs, process, tuning
from mclnf_jax.configs import checks
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality

config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'The workdir of the run to tune.')
flags.DEFINE_list('opts', ['sgd', 'adam'], 'Test-time optimisers tried.')
flags.DEFINE_list('lrs', ['1e-4', '1e-3', '1e-2', '1e-1'], 'Rates tried with each.')
flags.DEFINE_bool('knobs', True, 'Also choose each learner\'s own knobs (tuning.KNOBS).')
flags.DEFINE_integer('max_steps', 0, 'Steps per task of the criterion (0: eval.max_steps).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logs.quiet_libraries()
  process.configure()
  FLAGS = flags.FLAGS
  try:
    config, workdir = FLAGS.config, FLAGS.workdir
    grid = [(o.strip(), float(lr)) for o in FLAGS.opts for lr in FLAGS.lrs]
    experiment.run(config, workdir, 'train')
    modality = make_modality(config)
    signals = experiment.Signals(config, modality)
    val = signals.episodes(signals.train_val()[1])
    spec, chosen = task_spec(modality), {}
    for name in learners.names(config):
      if not tuning.tunable(config, name):
        logging.info('tune %s: adapts with its learned Meta-SGD rates; not tuned', name)
        continue
      learner = learners.build(config, name, spec)
      params = experiment.meta_params(config, learner, f'{workdir}/{name}')
      chosen[name] = tuning.choose(config, name, spec, modality, params, val, grid,
                                   FLAGS.max_steps or config.eval.max_steps, logging.info,
                                   knobs=FLAGS.knobs)
    logging.info('wrote %s', tuning.write(workdir, chosen))
  except (UserError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=checks.flags_parser)
