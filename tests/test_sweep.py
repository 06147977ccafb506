"""The sweep launcher (launch/sweep.py): grid and folder names, one-line errors before any
run, the SLURM job array, the summary table, and a real 2x2 sweep of a tiny config."""
import csv
import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest

from launch import sweep
from mclnf_jax import identity
from tests.helpers import one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, 'configs', 'quickstart.py')
GRID = ['meta.lr=1e-4,1e-3', 'eval.max_steps=16,32']
ENV = dict(os.environ, JAX_PLATFORMS='cpu')


def _plan(tmp_path, specs=GRID, overrides=('--config.learners=ol,modular',)):
  axes = sweep.parse_axes(list(specs), list(overrides))
  return axes, sweep.plan(QUICKSTART, list(overrides), axes, str(tmp_path / 'sweep'))


def test_the_grid_is_the_product_of_the_sweeps_last_fastest():
  axes = sweep.parse_axes(GRID + ['learners=ol,modular;modular'], [])
  assert axes[2] == sweep.Axis('learners', ('ol,modular', 'modular'))
  points = sweep.grid(axes)
  assert len(points) == 8
  assert points[0] == {'meta.lr': '1e-4', 'eval.max_steps': '16', 'learners': 'ol,modular'}
  assert points[1]['learners'] == 'modular' and points[2]['eval.max_steps'] == '32'
  assert points[4]['meta.lr'] == '1e-3'
  assert sweep.point_name(points[0]) == 'meta.lr=1e-4,eval.max_steps=16,learners=ol,modular'


def test_point_names_are_safe_folder_names():
  assert sweep.point_name({'data.root': '/a b/c'}) == 'data.root=_a_b_c'
  long = sweep.point_name({'name': 'x' * 300})
  assert len(long) == sweep.MAX_NAME and long != sweep.point_name({'name': 'x' * 299})


def test_each_point_gets_its_folder_config_and_main_flags(tmp_path):
  _, points = _plan(tmp_path)
  assert [p.index for p in points] == [0, 1, 2, 3]
  p = points[2]
  assert p.workdir == str(tmp_path / 'sweep' / 'meta.lr=1e-3,eval.max_steps=16')
  assert p.config.meta.lr == 1e-3 and p.config.eval.max_steps == 16   # parsed as main does
  assert p.args == (f'--config={QUICKSTART}', '--config.learners=ol,modular',
                    '--config.meta.lr=1e-3', '--config.eval.max_steps=16')


def test_base_overrides_are_taken_from_the_command_line_as_given():
  argv = ['sweep', '--config=c.py', '--workdir=d', '--config.meta.steps', '20',
          '--sweep=meta.lr=1,2', '--config.learners=ol', '--noconfig.meta.first_order']
  assert sweep.base_overrides(argv) == ['--config.meta.steps=20', '--config.learners=ol',
                                        '--noconfig.meta.first_order']


@pytest.mark.parametrize('specs, overrides, match', [
    ([], [], 'no --sweep'),
    (['meta.lr'], [], 'is not KEY=V1,V2'),
    (['=1,2'], [], 'is not KEY=V1,V2'),
    (['meta.lr='], [], 'empty value'),
    (['meta.lr=1e-3,,1e-2'], [], 'empty value'),
    (['meta.lrr=1,2'], [], "unknown config key 'meta.lrr'.*did you mean meta.lr"),
    (['meta.lr=1,1'], [], 'repeats a value'),
    (['meta.lr=1,2', 'meta.lr=3'], [], 'swept twice'),
    (['meta.lr=1,2'], ['--config.meta.lr=3'], 'both swept and set'),
])
def test_malformed_sweeps_are_one_line_errors(specs, overrides, match):
  one_line_error(match, sweep.parse_axes, specs, overrides)


@pytest.mark.parametrize('spec, match', [
    ('meta.lr=1e-3,abc', r"point 1 \(meta.lr=abc\).*could not convert string to float"),
    ('meta.lr=1e-3,-1', r'point 1 .*config.meta.lr=-1.0 must be positive'),
    ('learners=ol;bogus', r"point 1 .*unknown learner 'bogus'"),
])
def test_bad_values_are_one_line_errors_before_any_folder(tmp_path, spec, match):
  one_line_error(match, _plan, tmp_path, [spec], overrides=())
  assert not (tmp_path / 'sweep').exists()


def test_the_command_line_exits_2_on_a_bad_flag_before_writing(tmp_path):
  done = subprocess.run([sys.executable, '-m', 'launch.sweep', f'--config={QUICKSTART}',
                         f'--workdir={tmp_path / "sweep"}', '--sweep=meta.lr=1e-3,abc',
                         '--sweep=eval.max_steps=16,32'], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr == ('error: sweep point 2 (meta.lr=abc,eval.max_steps=16): flag '
                         "--config.meta.lr=abc: could not convert string to float: 'abc'\n")
  assert not (tmp_path / 'sweep').exists()


def _fake_result(point, name, psnr, steps=(1, 2, 4), **identity_changes):
  ident = identity.eval_identity(point.config, name)
  ident.update(identity_changes)
  path = os.path.join(point.workdir, 'results', f'{name}.json')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump({'identity': ident, 'steps': list(steps), 'num_signals': 2,
               'curves': {'psnr': psnr, 'ssim': [0.1] * len(steps)}}, f)


def test_summary_of_fake_results_and_complete_points_are_skipped(tmp_path, monkeypatch):
  axes, points = _plan(tmp_path)
  _fake_result(points[0], 'ol', [10.0, 12.0, 30.0])
  _fake_result(points[0], 'modular', [16.0, 20.0, 25.0])
  _fake_result(points[1], 'ol', [11.0, 13.0, 35.5])           # modular missing: partial
  _fake_result(points[2], 'ol', [99.0, 99.0, 99.0], learner='other')   # another config
  assert [sweep.is_complete(p) for p in points] == [True, False, False, False]

  launched = []
  monkeypatch.setattr(sweep.subprocess, 'run', lambda cmd, **kw: launched.append(cmd) or
                      subprocess.CompletedProcess(cmd, 3 if '--config.meta.lr=1e-3' in cmd
                                                  else 0))
  failed = sweep.run_points(points)
  assert len(launched) == 3 and all(f'--workdir={p.workdir}' in c
                                    for p, c in zip(points[1:], launched))
  assert failed == {2: 3, 3: 3}

  markdown = sweep.write_summary(str(tmp_path / 'sweep'), points, axes, 'test', failed)
  with open(tmp_path / 'sweep' / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['status'] for r in rows] == ['done', 'partial 1/2', 'failed (3)', 'failed (3)']
  assert rows[0]['meta.lr'] == '1e-4' and rows[0]['eval.max_steps'] == '16'
  assert rows[0]['point'] == 'meta.lr=1e-4,eval.max_steps=16' and rows[0]['last_step'] == '4'
  assert float(rows[0]['modular/psnr/step1']) == 16.0
  assert float(rows[0]['modular/psnr/last']) == 25.0
  assert float(rows[1]['ol/psnr/last']) == 35.5 and rows[1]['modular/psnr/last'] == ''
  assert rows[2]['ol/psnr/last'] == ''                  # a result of another config is ignored
  assert markdown == (tmp_path / 'sweep' / 'sweep.md').read_text()
  assert '## PSNR' in markdown and '## SSIM' in markdown
  assert '| 0 | 1e-4 | 16 | done | 4 | 10.00 -> 30.00 | 16.00 -> **25.00** |' in markdown
  assert '| 1 | 1e-4 | 32 | partial 1/2 | 4 | 11.00 -> **35.50** | n/a |' in markdown


def _executable(path, text):
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_the_slurm_array_runs_point_i_in_task_i(tmp_path):
  _, points = _plan(tmp_path)
  script = sweep.slurm_script(points, str(tmp_path / 'sweep'), 'sweep-quickstart')
  assert '#SBATCH --array=0-3\n' in script and not re.search('@[A-Z]+@', script)
  assert f'#SBATCH --output={tmp_path}/sweep/slurm/%A_%a.out' in script
  for p in points:
    line = next(l for l in script.splitlines() if l.strip().startswith(f'{p.index}) srun '))
    assert line.endswith(' ;;') and f'--workdir={p.workdir}' in line
    assert '-m mclnf_jax.main' in line and all(a in line for a in p.args)
  path = tmp_path / 'array.sbatch'
  path.write_text(script)
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _executable(bin_dir / 'srun', '#!/bin/bash\necho "$@"\n')    # prints what it would run
  env = dict(ENV, PATH=f'{bin_dir}:{os.environ["PATH"]}', SLURM_ARRAY_TASK_ID='2')
  done = subprocess.run(['bash', str(path)], env=env, capture_output=True, text=True,
                        timeout=30)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == sweep.main_command(points[2])
  done = subprocess.run(['bash', str(path)], env=dict(env, SLURM_ARRAY_TASK_ID='7'),
                        capture_output=True, text=True, timeout=30)
  assert done.returncode == 2 and 'no sweep point 7' in done.stderr
  assert '#SBATCH --array=1,3\n' in sweep.slurm_script([points[1], points[3]], 'd', 'x')


def test_slurm_flag_submits_with_sbatch_and_prints_the_summarize_command(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _executable(bin_dir / 'sbatch', f'#!/bin/bash\necho "$@" > {tmp_path}/sbatch_args\n'
              'echo "Submitted batch job 42"\n')
  workdir = tmp_path / 'sweep'
  done = subprocess.run([sys.executable, '-m', 'launch.sweep', f'--config={QUICKSTART}',
                         f'--workdir={workdir}', *(f'--sweep={s}' for s in GRID),
                         '--config.meta.steps=2', '--slurm'], cwd=REPO,
                        env=dict(ENV, PATH=f'{bin_dir}:{os.environ["PATH"]}'),
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  script = workdir / 'sweep_array.sbatch'
  assert (tmp_path / 'sbatch_args').read_text().strip() == str(script)
  assert 'Submitted batch job 42' in done.stdout and (workdir / 'slurm').is_dir()
  assert '--config.meta.steps=2 --config.meta.lr=1e-4' in script.read_text()
  summarize = done.stdout.strip().splitlines()[-1]
  assert summarize.endswith('--config.meta.steps=2 --summarize')
  assert "--sweep=meta.lr=1e-4,1e-3 --sweep=eval.max_steps=16,32" in summarize
  assert not any(workdir.glob('meta.lr=*'))          # nothing ran here


@pytest.mark.slow
def test_a_sweep_of_a_tiny_config_runs_and_writes_its_summary(tmp_path):
  config = tmp_path / 'tiny.py'
  config.write_text(textwrap.dedent(f'''
      from tests import helpers
      def get_config():
        c = helpers.tiny_config('ol,modular')
        c.name = 'tiny'
        c.data.update(name='embedded', root={str(tmp_path / 'tfds')!r}, resolution=12)
        return c
      '''))
  command = [sys.executable, '-m', 'launch.sweep', f'--config={config}',
             f'--workdir={tmp_path / "sweep"}', '--sweep=meta.lr=1e-3,1e-2',
             '--sweep=eval.max_steps=3', '--config.meta.steps=2']
  first = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=900)
  assert first.returncode == 0, first.stderr[-3000:]
  with open(tmp_path / 'sweep' / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['meta.lr'], r['eval.max_steps'], r['status'], r['last_step']) for r in rows] == [
      ('1e-3', '3', 'done', '3'), ('1e-2', '3', 'done', '3')]
  for r in rows:
    for name in ('ol', 'modular'):
      assert 0 < float(r[f'{name}/psnr/step1']) < 60 and 0 < float(r[f'{name}/psnr/last']) < 60
  # The random-init learner does not depend on meta.lr; the meta-learned one does.
  assert rows[0]['ol/psnr/last'] == rows[1]['ol/psnr/last']
  assert rows[0]['modular/psnr/step1'] != rows[1]['modular/psnr/step1']
  assert 'Ours (mod)' in first.stdout and '| 1 | 1e-2 | 3 | done | 3 |' in first.stdout
  second = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300)
  assert second.returncode == 0 and second.stderr.count('complete, skipped') == 2
  assert 'mclnf_jax.main' not in second.stderr
