"""The paper-tables command on a tiny config: Tables 1 and 6 from one command, resumable."""
import csv
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def test_paper_tables_writes_tables_1_and_6(tmp_path):
  config = tmp_path / 'tiny.py'
  config.write_text(textwrap.dedent(f'''
      from tests import helpers
      def get_config():
        c = helpers.tiny_config('ol,mcl')
        c.name = 'tiny'
        c.data.update(name='embedded', root={str(tmp_path / 'tfds')!r}, resolution=12)
        return c
      '''))
  command = [sys.executable, '-m', 'launch.paper_tables', f'--config={config}',
             f'--workdir={tmp_path / "out"}', '--tto_steps=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  table = (tmp_path / 'out' / 'table_psnr.md').read_text()
  assert 'tiny' in table and 'Ours (mod)' in table and 'Best (step)' in table
  assert 'ep/s' in (tmp_path / 'out' / 'compute_tiny.md').read_text()
  with open(tmp_path / 'out' / 'compute_tiny.csv') as f:
    rows = {r['method']: r for r in csv.DictReader(f)}
  # SIREN 2 -> 8 -> 8 -> 3 has 123 parameters; the modular learner holds 4 experts.
  assert rows['ol']['parameters'] == '123' and rows['modular']['parameters'] == '492'
  modular = rows['modular']
  assert float(modular['tto_speed_eps']) > 0 and float(modular['peak_memory_mib']) > 0
  # Rerunning finishes only what is missing: tests/test_crash.py kills and reruns it.


def test_nerf_cost_times_meta_steps_in_turn():
  """One JSON line per learner: a learner without a meta-step renders only; the
  meta-learned ones get memory, time and their ratio to the first meta-learned one."""
  import json
  command = [sys.executable, '-m', 'launch.nerf_cost', '--config=configs/nerf_quickstart.py',
             '--learner=ol,modular,modular_fim', '--rounds=2', '--query_rays=256',
             '--config.meta.batch_size=1', '--config.meta.inner_steps=1']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  lines = {d['learner']: d for d in map(json.loads, run.stdout.strip().splitlines())}
  assert list(lines) == ['ol', 'modular', 'modular_fim']
  assert 'meta_step_ms' not in lines['ol'] and lines['ol']['render_rays_per_s'] > 0
  assert lines['modular']['meta_step_vs_first'] == 1.0
  fim = lines['modular_fim']
  assert fim['meta_step_rounds'] == 2 and fim['meta_step_peak_mib'] > 0
  assert fim['meta_step_vs_first'] == pytest.approx(
      fim['meta_step_ms'] / lines['modular']['meta_step_ms'], abs=0.01)


def test_cell_coverage_prints_each_block_then_the_mean():
  """One line per block of both splits (a share per cell), then the mean over cells."""
  import json
  command = [sys.executable, '-m', 'launch.cell_coverage', '--config=configs/nerf_quickstart.py',
             '--config.data.resolution=16', '--config.scene.num_blocks=4',
             '--config.scene.views_per_cell=2']
  run = subprocess.run(command, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert run.returncode == 0, run.stderr[-3000:]
  lines = [json.loads(line) for line in run.stdout.strip().splitlines()]
  blocks, summary = lines[:-1], lines[-1]
  assert sorted(b['split'] for b in blocks) == ['test', 'train', 'train', 'train']
  shares = [s for b in blocks for s in b['own_cell_fraction']]
  assert summary['cells'] == 16 == len(shares)
  assert summary['mean'] == pytest.approx(sum(shares) / 16, abs=2e-3)
  assert 0 < summary['min'] <= summary['mean'] <= summary['max'] <= 1
