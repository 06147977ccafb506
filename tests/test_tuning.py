"""One test-time protocol: each learner's optimiser and rate chosen by the same rule on
meta-validation signals, written to the workdir and used by evaluation."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from mclnf_jax import learners, tuning
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.types import stack_episodes
from tests import helpers

TASKS = ImageTasks(shape=(12, 12), channels=3, grid=(1, 4))     # SSIM needs 11x11


def test_choose_keeps_the_best_mean_of_the_metric_over_the_steps():
  config, spec = helpers.tiny_config('cl'), task_spec(TASKS)
  params = learners.build(config, 'cl', spec).init(jax.random.key(0))
  episodes = stack_episodes([TASKS.episode(i) for i in helpers.smooth_images(2, size=12)])
  logged = []
  chosen = tuning.choose(config, 'cl', spec, TASKS, params, episodes,
                         [('sgd', 1e-6), ('adam', 1e-2)], 4, logged.append)
  assert (chosen['tto_opt'], chosen['tto_lr']) == ('adam', 1e-2)   # 1e-6 barely moves
  assert set(chosen['scores']) == {'sgd 1e-06', 'adam 0.01'} and len(logged) == 2
  assert chosen['steps'] == [1, 2, 4]


def test_apply_sets_the_tuned_settings_and_refuses_a_broken_file(tmp_path):
  config = helpers.tiny_config('ol,modular')
  assert tuning.apply(config, str(tmp_path)) is config            # no file: unchanged
  tuning.write(str(tmp_path), {'ol': {'tto_opt': 'sgd', 'tto_lr': 0.5}})
  tuned = tuning.apply(config, str(tmp_path))
  assert (tuned.methods.ol.tto_opt, tuned.methods.ol.tto_lr) == ('sgd', 0.5)
  assert tuned.methods.modular.tto_opt == config.methods.modular.tto_opt
  (tmp_path / tuning.FILE).write_text('{"ol": {"tto_lr": 1}}')
  helpers.one_line_error(r'tto.json is not a test-time tuning result .*tune_tto',
                         tuning.apply, config, str(tmp_path))


def test_meta_sgd_learners_are_not_tuned():
  config = helpers.tiny_config('modular')
  assert tuning.tunable(config, 'modular')
  config.methods.modular.meta_sgd = 'tensor'
  assert not tuning.tunable(config, 'modular')


@pytest.mark.slow
def test_the_command_writes_tto_json_and_evaluation_uses_it(tmp_path):
  config = tmp_path / 'tiny.py'
  config.write_text(textwrap.dedent(f'''
      from tests import helpers
      def get_config():
        c = helpers.tiny_config('ol,modular')
        c.data.update(name='embedded', root={str(tmp_path / 'tfds')!r}, resolution=12)
        return c
      '''))
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  work = tmp_path / 'work'
  tune = subprocess.run([sys.executable, '-m', 'launch.tune_tto', f'--config={config}',
                         f'--workdir={work}', '--opts=sgd,adam', '--lrs=1e-3,1e-2'],
                        capture_output=True, text=True, env=env, timeout=600)
  assert tune.returncode == 0, tune.stderr[-3000:]
  chosen = json.loads((work / 'tto.json').read_text())
  assert set(chosen) == {'ol', 'modular'} and len(chosen['ol']['scores']) == 4
  run = subprocess.run([sys.executable, '-m', 'mclnf_jax.main', f'--config={config}',
                        f'--workdir={work}'], capture_output=True, text=True, env=env,
                       timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((work / 'results' / 'ol.json').read_text())
  used = result['identity']['methods']['ol']
  assert (used['tto_opt'], used['tto_lr']) == (chosen['ol']['tto_opt'], chosen['ol']['tto_lr'])
