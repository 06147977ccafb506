"""End-to-end runs of the experiment loop on tiny embedded data, resume and bad input."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mclnf_jax import experiment, identity, meta
from mclnf_jax.configs import checks
from mclnf_jax.tasks import task_spec
from mclnf_jax.errors import UserError
from tests import helpers

pytestmark = pytest.mark.slow


def image_config(tmp_path, learners='ol,maml_cl,mcl,modular_fim'):
  c = helpers.embedded_config(tmp_path, learners)
  c.methods.ol.tto_opt = 'adam'
  return c


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('run')
  config = image_config(tmp)
  workdir = str(tmp / 'work')
  results = experiment.run(config, workdir, 'train_and_eval')
  return config, workdir, results


def test_outputs_of_a_full_run(finished_run):
  config, workdir, results = finished_run
  assert set(results) == {'ol', 'maml_cl', 'modular', 'modular_fim'}   # 'mcl': an alias
  for name, r in results.items():
    assert r['steps'] == [1, 2, 4]
    assert np.isfinite(r['curves']['psnr']).all() and len(r['curves']['ssim']) == 3
  table = open(os.path.join(workdir, 'table_psnr.md')).read()
  for shown in ('OL', 'MAML+CL', 'Ours (mod)', 'Ours (MIM)', 'Best (step)'):
    assert shown in table
  for f in ('table_psnr.csv', 'table_ssim.md', 'curves.csv', 'curves_psnr.png',
            'reconstructions.png'):
    assert os.path.getsize(os.path.join(workdir, f)) > 0
  assert not [f for f in os.listdir(workdir) if 'tmp' in f]


def test_rerun_resumes_instead_of_redoing(finished_run, monkeypatch):
  config, workdir, results = finished_run
  def no_meta_steps(*args, **kwargs):
    raise AssertionError('meta-training ran again')
  monkeypatch.setattr(meta, 'make_meta_step', no_meta_steps)
  monkeypatch.setattr(experiment.evaluate, 'Evaluator', no_meta_steps)
  again = experiment.run(config, workdir, 'train_and_eval')
  assert again['modular']['curves'] == results['modular']['curves']


def test_workdir_of_another_config_is_refused(finished_run):
  config, workdir, _ = finished_run
  other = config.copy_and_resolve_references()
  other.meta.inner_steps = 5
  with pytest.raises(UserError, match=r'holds a \w+ run of another config: meta.inner_steps'):
    experiment.run(other, workdir, 'train_and_eval')


def test_interrupted_meta_training_resumes_to_the_same_state(tmp_path, monkeypatch):
  config = image_config(tmp_path, learners='modular')
  experiment.run(config, str(tmp_path / 'full'), 'train')   # uninterrupted
  real_train = meta.train

  def crash_after_first_save(*args, **kwargs):
    for state in real_train(*args, **kwargs):
      yield state
      raise KeyboardInterrupt
  monkeypatch.setattr(meta, 'train', crash_after_first_save)
  with pytest.raises(KeyboardInterrupt):
    experiment.run(config, str(tmp_path / 'cut'), 'train')
  monkeypatch.setattr(meta, 'train', real_train)
  experiment.run(config, str(tmp_path / 'cut'), 'train')
  spec = task_spec(experiment.make_modality(config))
  learner = experiment.learners.build(config, 'modular', spec)
  a = experiment.meta_params(config, learner, str(tmp_path / 'full' / 'modular'))
  b = experiment.meta_params(config, learner, str(tmp_path / 'cut' / 'modular'))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_eval_without_training_says_what_to_do_and_writes_nothing(tmp_path):
  config = image_config(tmp_path, learners='ol,modular')
  with pytest.raises(UserError, match='no meta-trained checkpoint in .*modular: run with --mode='):
    experiment.run(config, str(tmp_path / 'w'), 'eval')
  assert not (tmp_path / 'w').exists()     # not even OL's results: checked before evaluating


def test_a_file_as_workdir_is_refused(tmp_path):
  afile = tmp_path / 'afile'
  afile.write_text('')
  with pytest.raises(UserError, match='is a file: name a folder'):
    experiment.run(image_config(tmp_path, learners='ol'), str(afile), 'eval')


def run_main(*flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'mclnf_jax.main', *flags], capture_output=True,
                        text=True, env=env, timeout=300)


@pytest.mark.parametrize('flags,message', [
    (['--config.meta.steps=-1'], 'config.meta.steps=-1 must be positive'),
    (['--config.tasks.grid=(1,7)'], 'does not split into (1, 7) equal cells'),
    (['--config.data.name=ffhq', '--config.data.root=/no/such/folder'], '/no/such/folder'),
    (['--mode=serve'], 'serve'),
    (['--config.fim.fisher=full'], "config.fim.fisher='full': use one of exact, diag, kfac"),
    (['--config.learners='], 'config.learners is empty'),
    (['--config.methods.modular.tto_opt=adamw'], "unknown optimizer 'adamw'"),
    (['--config.field.sine=cheap'], "unknown sine 'cheap'"),
])
def test_cli_bad_input_is_one_line(tmp_path, flags, message):
  done = run_main('--config=configs/quickstart.py', f'--workdir={tmp_path}', *flags)
  assert done.returncode != 0
  error_lines = [l for l in done.stderr.splitlines() if l.startswith(('error:', 'FATAL'))]
  assert len(error_lines) == 1 and message in error_lines[0], done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  assert not list(tmp_path.iterdir())      # a refused run leaves the workdir empty


def test_test_time_scene_keys_keep_the_checkpoint_but_not_the_results():
  config = helpers.tiny_config('modular')
  other = config.copy_and_resolve_references()
  other.scene.tto_rays_per_task = 4096
  assert (identity.learner_identity(config, 'modular') ==
          identity.learner_identity(other, 'modular'))
  assert identity.eval_identity(config, 'modular') != identity.eval_identity(other, 'modular')


def test_negative_test_time_rays_are_refused():
  config = helpers.tiny_config('modular')
  config.scene.tto_rays_per_task = -1
  with pytest.raises(UserError, match='scene.tto_rays_per_task=-1 must be >= 0'):
    checks.check(config)
