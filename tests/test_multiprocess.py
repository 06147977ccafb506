"""Several processes on localhost train as one (JAX's multi-controller runtime, gloo).

Each worker is a subprocess joined through a coordinator at 127.0.0.1 on a free port and
runs under a timeout (a peer that dies early leaves the other waiting): two processes
meta-train, are killed after a checkpoint, resume, and end where one process ends; the
checkpoint they wrote restores here, in one process; SLURM's variables, faked, are what
`jax.distributed`'s own detection reads.
"""
import functools
import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mclnf_jax import checkpoints, distributed, learners, meta
from tests import helpers
from tests.test_distributed import REPO, subprocess_env

pytestmark = pytest.mark.slow
TIMEOUT_S = 300


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_together(code: str, argvs: list[list], envs: list[dict]) -> list[tuple]:
  """Runs `python -c code *argv` once per (argv, env), all started together; their
  (return code, stdout, stderr). Every worker is killed if one outlives TIMEOUT_S."""
  workers = [subprocess.Popen([sys.executable, '-c', code, *map(str, argv)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for argv, env in zip(argvs, envs, strict=True)]
  outs = []
  try:
    for w in workers:
      out, err = w.communicate(timeout=TIMEOUT_S)
      outs.append((w.returncode, out, err))
  except subprocess.TimeoutExpired:
    for w in workers:
      w.kill()
      w.communicate()
    pytest.fail(f'a worker did not finish in {TIMEOUT_S} s')
  return outs


# A tiny modular meta-training run (4 steps, checkpoints every 2) on a mesh of every
# device of every process; `crash` kills the process right after that step's save.
WORKER = r'''
import json, os, signal, sys
index, count, port, folder, crash = sys.argv[1:]
from mclnf_jax import distributed
if int(count) > 1:
  distributed.initialize(f'127.0.0.1:{port}', int(count), int(index), timeout_s=120)
import jax, numpy as np
from tests import helpers
from mclnf_jax import checkpoints, learners, meta
from mclnf_jax.types import stack_episodes

config = helpers.tiny_config('modular')
config.field.depth = 2
config.meta.update(inner_steps=1, steps=4, save_every=2, val_every=2, batch_size=4)
tasks = helpers.tiny_image_tasks()
train, val = helpers.smooth_images(8, seed=1), helpers.smooth_images(2, seed=2)
mesh = distributed.make_mesh()
save = checkpoints.save
def save_then_die(where, state):
  save(where, state)
  if int(state['step']) == int(crash):
    os.kill(os.getpid(), signal.SIGKILL)
checkpoints.save = save_then_die

def episode_batch(step):
  rows = meta.process_slice(meta.batch_indices(0, step, len(train), 4), mesh)
  return stack_episodes([tasks.episode(train[i]) for i in rows])

learner = learners.build(config, 'modular', helpers.tiny_spec())
start = checkpoints.latest_step(folder) or 0
best = meta.meta_train(learner, config.meta, 0, folder, episode_batch,
                       lambda: stack_episodes([tasks.episode(v) for v in val]), mesh=mesh,
                       experts=True)
print(json.dumps({'process': jax.process_index(), 'of': jax.process_count(), 'start': start,
                  'best': [np.asarray(x).tolist() for x in jax.tree.leaves(best)]}))
'''


def meta_train(folder, count: int, crash: int = 0) -> list[tuple]:
  """WORKER in `count` processes (one CPU device each) joined on a free port."""
  port = free_port()
  return run_together(WORKER, [[i, count, port, folder, crash] for i in range(count)],
                      [subprocess_env()] * count)


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
  """Two processes meta-train to step 2, die there, then resume to step 4."""
  folder = tmp_path_factory.mktemp('two') / 'modular'
  killed = meta_train(folder, 2, crash=2)
  # Process 0 kills itself after its save; its peer too, or fails once it is gone.
  assert killed[0][0] == -signal.SIGKILL and killed[1][0] != 0, [e[-2000:] for *_, e in killed]
  assert checkpoints.latest_step(str(folder)) == 2
  resumed = meta_train(folder, 2)
  for code, _, err in resumed:
    assert code == 0, err[-3000:]
  return folder, [json.loads(out.strip().splitlines()[-1]) for _, out, _ in resumed]


@pytest.fixture(scope='module')
def one_process(tmp_path_factory):
  folder = tmp_path_factory.mktemp('one') / 'modular'
  (code, out, err), = meta_train(folder, 1)
  assert code == 0, err[-3000:]
  return folder, json.loads(out.strip().splitlines()[-1])


def test_two_processes_killed_and_resumed_end_where_one_process_ends(two_processes,
                                                                    one_process):
  _, ends = two_processes
  assert [(e['process'], e['of'], e['start']) for e in ends] == [(0, 2, 2), (1, 2, 2)]
  one = one_process[1]['best']
  for end in ends:
    for a, b in zip(end['best'], one, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert ends[0]['best'] == ends[1]['best']         # replicated: one copy everywhere


def test_a_checkpoint_of_two_processes_restores_in_one(two_processes, one_process):
  config = helpers.tiny_config('modular')
  config.field.depth = 2
  config.meta.update(inner_steps=1, steps=4, save_every=2, val_every=2, batch_size=4)
  learner = learners.build(config, 'modular', helpers.tiny_spec())
  builder = functools.partial(meta.state_builder, learner, meta.outer_optimizer(config.meta),
                              jax.random.key(0), distributed.make_mesh())
  step, two = checkpoints.restore(str(two_processes[0]), builder())
  _, one = checkpoints.restore(str(one_process[0]), builder())
  assert step == 4 and int(two['step']) == 4
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one), strict=True):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5,
                               atol=1e-6)
  # ... and without a mesh too (a template without shardings, as api.load_init builds).
  plain = functools.partial(meta.init_state, learner, meta.outer_optimizer(config.meta),
                            jax.random.key(0))
  _, again = checkpoints.restore(str(two_processes[0]), plain)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(two), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Process 0 alone wrote the metrics (one line per logged step, not two).
  with open(os.path.join(two_processes[0], 'metrics.jsonl'), encoding='utf-8') as f:
    steps = [json.loads(line)['step'] for line in f]
  assert len(steps) == len(set(steps))


SLURM_WORKER = r'''
import json
from mclnf_jax import distributed
distributed.initialize(timeout_s=120)
import jax, numpy as np
mesh = distributed.make_mesh()
rows = distributed.global_batch(mesh, np.full((1, 3), jax.process_index() + 1.0), 2)
total = jax.jit(lambda a: a.sum(), out_shardings=distributed.replicated(mesh))(rows)
print(json.dumps({'process': jax.process_index(), 'of': jax.process_count(),
                  'total': float(total)}))
'''


def test_slurm_variables_on_localhost_are_detected():
  """srun's variables (what jax.distributed's SlurmCluster reads), faked for 2 tasks on
  this host; $JAX_COORDINATOR_PORT replaces the port SLURM_JOB_ID would give."""
  common = dict(SLURM_JOB_ID='4242', SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2',
                SLURM_STEP_NUM_NODES='1', JAX_COORDINATOR_PORT=str(free_port()))
  envs = [{**subprocess_env(), **common, 'SLURM_PROCID': str(i), 'SLURM_LOCALID': str(i)}
          for i in range(2)]
  outs = run_together(SLURM_WORKER, [[], []], envs)
  for code, _, err in outs:
    assert code == 0, err[-3000:]
  got = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outs]
  # Each process gave its row (1s and 2s): the sum over both is 3 * (1 + 2).
  assert got == [{'process': 0, 'of': 2, 'total': 9.0}, {'process': 1, 'of': 2, 'total': 9.0}]


def test_no_cluster_and_no_coordinator_is_a_one_line_error():
  code = ('from mclnf_jax import distributed\n'
          'from mclnf_jax.errors import UserError\n'
          'try:\n  distributed.initialize(timeout_s=5)\n'
          'except UserError as e:\n  print(e)\n')
  env = {k: v for k, v in subprocess_env().items()
         if not k.startswith(('SLURM_', 'OMPI_', 'JAX_COORDINATOR'))}
  (rc, out, err), = run_together(code, [[]], [env])
  assert rc == 0, err[-2000:]
  line = out.strip().splitlines()[-1]
  assert '--distributed found no cluster' in line and '--coordinator_address' in line
