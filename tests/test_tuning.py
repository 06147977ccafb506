"""One test-time protocol: each learner's optimiser and rate chosen by the same rule on
meta-validation signals, written to the workdir and used by evaluation."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from mclnf_jax import learners, tuning
from mclnf_jax.configs import base, keys
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
                         f'--workdir={work}', '--opts=sgd,adam', '--lrs=1e-2'],
                        capture_output=True, text=True, env=env, timeout=600)
  assert tune.returncode == 0, tune.stderr[-3000:]
  chosen = json.loads((work / 'tto.json').read_text())
  assert set(chosen) == {'ol', 'modular'} and len(chosen['ol']['scores']) == 2
  run = subprocess.run([sys.executable, '-m', 'mclnf_jax.main', f'--config={config}',
                        f'--workdir={work}'], capture_output=True, text=True, env=env,
                       timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((work / 'results' / 'ol.json').read_text())
  used = result['identity']['methods']['ol']
  assert (used['tto_opt'], used['tto_lr']) == (chosen['ol']['tto_opt'], chosen['ol']['tto_lr'])


def test_every_knob_is_declared_result_and_belongs_to_a_learner_not_meta_learned():
  declared = base.declarations()
  for name, grid in tuning.KNOBS.items():
    assert not learners.BY_NAME[name].meta_learned, name
    assert 0 < len(grid) <= tuning.KNOB_BUDGET, name
    for values in grid:
      assert set(values) == set(grid[0]), name        # one set of knobs per learner
      for key in values:
        assert declared[f'methods.{name}.{key}'].kind == keys.RESULT, (name, key)


def test_knobs_are_chosen_after_the_rate_on_the_same_criterion(monkeypatch):
  """EWC: the (optimiser, rate) first, then each lambda of its grid at that pair; the
  configured lambda's first-stage score competes; the best is kept and applied."""
  config, spec = helpers.tiny_config('ewc'), task_spec(TASKS)
  config.methods.ewc.ewc_lambda = 3.0
  tried = []

  def fake(config, name, spec, modality, meta_params, val, steps, values):
    tried.append(dict(values))
    lam = values.get('ewc_lambda', config.methods[name].ewc_lambda)
    return 'psnr', -abs(lam - 0.1) + (values['tto_lr'] == 1e-2)   # best: 1e-2, lambda 0.1
  monkeypatch.setattr(tuning, '_score', fake)
  monkeypatch.setattr(tuning, 'KNOBS', {'ewc': [{'ewc_lambda': v} for v in (0.1, 1.0, 3.0)]})
  chosen = tuning.choose(config, 'ewc', spec, TASKS, None, None,
                         [('sgd', 1e-3), ('sgd', 1e-2)], 4, lambda _: None)
  assert (chosen['tto_opt'], chosen['tto_lr']) == ('sgd', 1e-2)
  assert chosen['knobs'] == {'ewc_lambda': 0.1}
  assert set(chosen['knob_scores']) == {'ewc_lambda=3', 'ewc_lambda=0.1', 'ewc_lambda=1'}
  assert len(tried) == 2 + 2          # the configured 3.0 is not evaluated twice
  assert all(t['tto_lr'] == 1e-2 for t in tried[2:])


def test_apply_sets_the_tuned_knobs_and_refuses_others(tmp_path):
  config = helpers.tiny_config('ewc,mer')
  tuning.write(str(tmp_path), {'ewc': {'tto_opt': 'adam', 'tto_lr': 0.01,
                                       'knobs': {'ewc_lambda': 10.0}},
                               'mer': {'tto_opt': 'sgd', 'tto_lr': 0.1,
                                       'knobs': {'beta': 0.1, 'gamma': 0.3}}})
  tuned = tuning.apply(config, str(tmp_path))
  assert tuned.methods.ewc.ewc_lambda == 10.0
  assert (tuned.methods.mer.beta, tuned.methods.mer.gamma) == (0.1, 0.3)
  tuning.write(str(tmp_path), {'ewc': {'tto_opt': 'adam', 'tto_lr': 0.01,
                                       'knobs': {'width': 512}}})
  helpers.one_line_error(r'tto.json is not a test-time tuning result .*width',
                         tuning.apply, config, str(tmp_path))


def test_a_baseline_is_tuned_end_to_end_on_real_evaluations():
  config, spec = helpers.tiny_config('ewc'), task_spec(TASKS)
  params = learners.build(config, 'ewc', spec).init(jax.random.key(0))
  episodes = stack_episodes([TASKS.episode(i) for i in helpers.smooth_images(1, size=12)])
  with pytest.MonkeyPatch.context() as m:
    m.setattr(tuning, 'KNOBS', {'ewc': [{'ewc_lambda': 0.1}]})
    chosen = tuning.choose(config, 'ewc', spec, TASKS, params, episodes,
                           [('adam', 1e-2)], 2, lambda _: None)
  assert chosen['knobs']['ewc_lambda'] in (0.1, config.methods.ewc.ewc_lambda)
  assert len(chosen['knob_scores']) == 2 and all(np.isfinite(list(chosen['knob_scores'].values())))
