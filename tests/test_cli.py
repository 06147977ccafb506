"""Command-line input errors are one line `error: ...` on stderr, exit 2, nothing written."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *flags):
  return subprocess.run([sys.executable, '-m', module, *flags], capture_output=True, text=True,
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)


@pytest.mark.parametrize('module', ['mclnf_jax.main', 'launch.paper_tables'])
@pytest.mark.parametrize('flags,message', [
    (['--config=configs/quickstart.py', '--config.nope=1'],
     "error: unknown config key 'nope' (--config.nope): did you mean name?"),
    (['--config=configs/quickstart.py', '--config.meta.log_evry=2'],
     "error: unknown config key 'meta.log_evry' (--config.meta.log_evry): did you mean "
     'meta.log_every'),
    (['--config=configs/no_such_config.py'],
     'error: config file configs/no_such_config.py does not exist'),
    (['--config=configs/quickstart.py', '--config.meta.steps=many'],
     "error: flag --config.meta.steps=many: invalid literal for int()"),
    (['--config=configs/image_celeba.py:gpu'],
     "error: flag --config=configs/image_celeba.py:gpu: unknown config variant 'gpu'"),
])
def test_bad_command_line_is_one_line(tmp_path, module, flags, message):
  workdir = tmp_path / 'work'
  done = _run(module, *flags, f'--workdir={workdir}')
  assert done.returncode == 2, done.stderr[-3000:]
  assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr[-3000:]
  assert done.stderr.startswith(message), done.stderr
  assert not workdir.exists()


def test_a_missing_more_config_is_one_line(tmp_path):
  done = _run('launch.paper_tables', '--config=configs/quickstart.py',
              '--more_configs=configs/no_such_config.py', f'--workdir={tmp_path / "work"}')
  assert done.returncode == 2
  assert done.stderr.strip() == ('error: config file configs/no_such_config.py does not '
                                 'exist (--more_configs)')
  assert not (tmp_path / 'work').exists()
