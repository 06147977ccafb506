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


def test_nerf_cost_times_steps_in_turn():
  """Steps are called one after another each round (after a warm-up call each), so a
  slow spell of the machine lands on every learner's timings alike."""
  from launch import nerf_cost
  calls = []
  steps = {name: (lambda name=name: calls.append(name)) for name in ('a', 'b')}
  seconds = nerf_cost.in_turn(steps, rounds=3)
  assert calls == ['a', 'b'] * 4 and set(seconds) == {'a', 'b'}
  assert all(s >= 0 for s in seconds.values())
