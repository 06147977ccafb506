"""SIGKILL anywhere, resume exactly: the real command killed at several moments, rerun.

Each kill is triggered by a file of the run appearing in the workdir (polled every
millisecond), so the moments do not depend on timing: after the first checkpoint
(meta-training), while orbax writes a checkpoint (its temporary folder exists), after
the evaluation curves are computed but before the result is written (eval_metrics.jsonl),
and while the report is written (after the result file). The killed runs are chained in
one workdir, each rerun of the same command resuming the previous one; at the end the
meta-state (every leaf, bit for bit on CPU) and the results equal those of an
uninterrupted run.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from mclnf_jax import checkpoints, learners, meta
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS='cpu')


def write_config(tmp_path, learner_names):
  path = tmp_path / 'tiny.py'
  path.write_text(textwrap.dedent(f'''
      from tests import helpers
      def get_config():
        c = helpers.tiny_config({learner_names!r})
        c.name = 'tiny'
        c.data.update(name='embedded', root={str(tmp_path / 'tfds')!r}, resolution=12)
        c.meta.update(steps=6, save_every=2, val_every=2, log_every=1)
        return c
      '''))
  return path


def load_config(path):
  import importlib.util   # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location('tiny_crash_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run(command, log, trigger=None, timeout=300):
  """Runs `command`; SIGKILLs it as soon as `trigger()` holds. Whether it was killed."""
  with open(log, 'ab') as err:
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=err)
    start = time.time()
    while proc.poll() is None:
      if trigger is not None and trigger():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
      if time.time() - start > timeout:
        proc.kill()
        raise AssertionError(f'{command} ran past {timeout} s')
      time.sleep(0.001)
  assert proc.returncode == 0, open(log).read()[-3000:]
  return False


HITS = []


def exists(*patterns):
  """A trigger: the first pattern with a match (recorded in HITS) or None."""
  def trigger():
    for p in patterns:
      if glob.glob(p):
        HITS.append(p)
        return p
    return None
  return trigger


def meta_state(config, folder):
  learner = learners.build(config, 'maml_cl', task_spec(make_modality(config)))
  init = lambda: meta.init_state(learner, meta.outer_optimizer(config.meta),
                                 jax.random.key(config.seed))
  return checkpoints.restore(folder, init)


def result(workdir, name):
  with open(os.path.join(workdir, 'results', f'{name}.json')) as f:
    r = json.load(f)
  r.pop('adapt_seconds')                     # wall time, the one thing that may differ
  return r


def test_sigkill_at_any_moment_resumes_exactly(tmp_path):
  config_path = write_config(tmp_path, 'maml_cl')
  command = lambda wd: [sys.executable, '-m', 'mclnf_jax.main', f'--config={config_path}',
                        f'--workdir={wd}']
  ref, work = str(tmp_path / 'ref'), str(tmp_path / 'work')
  log = str(tmp_path / 'log')
  run(command(ref), log)
  ck = os.path.join(work, 'maml_cl', 'checkpoints')
  moments = [   # (what is interrupted, the file whose appearance triggers the kill)
      ('meta-training', exists(os.path.join(ck, '2'))),
      ('an orbax save', exists(os.path.join(ck, '*orbax-checkpoint-tmp*'),
                               os.path.join(ck, '6'))),
      ('evaluation', exists(os.path.join(work, 'maml_cl', 'eval_metrics.jsonl'))),
      ('report writing', exists(os.path.join(work, 'results', 'maml_cl.json'))),
  ]
  killed = [what for what, trigger in moments if run(command(work), log, trigger)]
  run(command(work), log)                                  # the last rerun finishes
  assert killed == [what for what, _ in moments]
  print('kills triggered by', [os.path.relpath(h, work) for h in HITS])

  config = load_config(config_path)
  (step_a, a), (step_b, b) = (meta_state(config, os.path.join(wd, 'maml_cl'))
                              for wd in (ref, work))
  assert step_a == step_b == 6
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert result(ref, 'maml_cl') == result(work, 'maml_cl')
  with np.load(os.path.join(ref, 'results', 'maml_cl.npz')) as x, \
      np.load(os.path.join(work, 'results', 'maml_cl.npz')) as y:
    np.testing.assert_array_equal(x['recon'], y['recon'])
  for name in ('table_psnr.md', 'table_psnr.csv', 'curves.csv'):
    assert open(os.path.join(ref, name)).read() == open(os.path.join(work, name)).read()
  # the training log: every step once, the same losses as the uninterrupted run's
  records = [[(r['step'], r.get('loss'), r.get('val_mse')) for r in map(json.loads, open(
      os.path.join(wd, 'maml_cl', 'metrics.jsonl')))] for wd in (ref, work)]
  steps_b = [s for s, _, _ in records[1]]
  assert sorted(set(steps_b)) == list(range(1, 7))
  last = {s: (l, v) for s, l, v in records[1]}            # a resumed step's last record
  assert {s: (l, v) for s, l, v in records[0]} == last


def test_paper_tables_rerun_finishes_missing_rows_and_keeps_finished_ones(tmp_path):
  config_path = write_config(tmp_path, 'ol,maml_cl')
  out = tmp_path / 'out'
  command = [sys.executable, '-m', 'launch.paper_tables', f'--config={config_path}',
             f'--workdir={out}', '--tto_steps=2']
  log = str(tmp_path / 'log')
  done = out / 'tiny' / 'results' / 'ol.json'
  assert run(command, log, exists(str(done)))             # killed after the first row
  assert not (out / 'tiny' / 'results' / 'maml_cl.json').exists()
  before = {p: (os.stat(p).st_mtime_ns, open(p, 'rb').read())
            for p in [str(done)] + glob.glob(str(out / 'tiny' / 'maml_cl' / 'checkpoints'
                                                 / '*' / '**'), recursive=True)
            if os.path.isfile(p)}
  open(log, 'w').close()
  run(command, log)
  assert 'ol: evaluation already done' in open(log).read()
  assert 'meta-train maml_cl' not in open(log).read()      # meta-training was finished
  for p, (mtime, data) in before.items():
    assert os.stat(p).st_mtime_ns == mtime and open(p, 'rb').read() == data, p
  table = (out / 'table_psnr.md').read_text()
  assert 'OL' in table and 'MAML+CL' in table
  assert (out / 'tiny' / 'results' / 'maml_cl.json').exists()
