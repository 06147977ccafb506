"""Many devices in one process: the mesh, shardings, and results equal to one device.

Forced CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8) must be set before
JAX starts, so the multi-device checks run in one subprocess whose results the tests read;
the checks of the mesh's own errors run here, on this process's one device.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mclnf_jax import distributed, meta
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(devices: int = 1) -> dict:
  """The environment of a worker: `devices` forced CPU devices, the tests' XLA cache."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO,
             JAX_COMPILATION_CACHE_DIR=os.path.expanduser('~/.cache/mclnf_jax/xla_tests'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5')
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


# The same global meta-batch (8 signals) stepped on meshes of 1, 2, 4 and 8 devices, a
# data x expert mesh for the modular learner, the one-device mesh against no mesh at all
# (today's path), evaluation of 3 signals split over 4 devices (padded to 4) against one
# device, and the errors of an indivisible meta-batch.
MANY_DEVICES = r'''
import json, os, pathlib, sys
import jax, numpy as np
from tests import helpers
from mclnf_jax import distributed, evaluate, experiment, learners, meta
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.types import stack_episodes

config = helpers.tiny_config('maml_cl,modular')
config.meta.inner_steps = 1
config.field.depth = 2
episodes = helpers.tiny_episodes(8)
out = {'devices': jax.device_count()}

def leaves(tree):
  return [np.asarray(x).tolist() for x in jax.tree.leaves(tree)]

def stepped(name, data, expert=1, mesh_too=True):
  learner = learners.build(config, name, helpers.tiny_spec())
  optimizer = meta.outer_optimizer(config.meta)
  mesh = distributed.make_mesh(data, expert, jax.devices()[:data * expert]) if mesh_too else None
  state = meta.state_builder(learner, optimizer, jax.random.key(0), mesh)()
  step = meta.make_meta_step(learner, optimizer, mesh)
  for _ in range(2):
    batch = (distributed.global_batch(mesh, episodes, 8, experts=expert > 1) if mesh_too
             else jax.tree.map(jax.numpy.asarray, episodes))
    state, _ = step(state, batch)
  return leaves(state['params'])

for name in ('modular', 'maml_cl'):
  out[name] = {str(n): stepped(name, n) for n in (1, 2, 4, 8)}
  out[name]['0'] = leaves(learners.build(config, name, helpers.tiny_spec()).init(
      jax.random.key(0)))
out['modular']['4x2'] = stepped('modular', 4, 2)
out['modular']['none'] = stepped('modular', 1, mesh_too=False)

tasks = ImageTasks(shape=(12, 12), channels=3, grid=(1, 4))     # SSIM needs 11x11
three = stack_episodes([tasks.episode(i) for i in helpers.smooth_images(3, size=12)])
mesh = distributed.make_mesh(4, 1, jax.devices()[:4])
for name in ('modular', 'maml_cl'):
  learner = learners.build(config, name, task_spec(tasks))
  params = learner.init(jax.random.key(0))
  got = {}
  for key, m in (('one', None), ('four', mesh)):
    values, kept, final, _ = evaluate.Evaluator(learner, tasks, m).curves(
        params, three, [1, 2, 3], keep=2, log=None)
    got[key] = {'values': {k: v.tolist() for k, v in values.items()}, 'kept': kept.tolist(),
                'final': leaves(final)}
  out['eval_' + name] = got

def error(fn):
  try:
    fn()
  except UserError as e:
    return str(e)
  return None

tmp = sys.argv[1]
config.meta.batch_size = 3
bad = helpers.embedded_config(pathlib.Path(tmp))
bad.meta.batch_size = 3
out['run_error'] = error(lambda: experiment.run(bad, os.path.join(tmp, 'workdir'), 'train'))
out['written'] = sorted(os.listdir(tmp))
learner = learners.build(config, 'modular', helpers.tiny_spec())
out['meta_train_error'] = error(lambda: meta.meta_train(
    learner, config.meta, 0, os.path.join(tmp, 'folder'), lambda step: episodes,
    lambda: episodes, mesh=distributed.make_mesh()))
out['mesh_error'] = error(lambda: distributed.make_mesh(3, 2))
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def many(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('many_devices')
  done = subprocess.run([sys.executable, '-c', MANY_DEVICES, str(tmp)], cwd=REPO,
                        env=subprocess_env(8), capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def differs(a, b) -> bool:
  return any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


slow = pytest.mark.slow


@slow
@pytest.mark.parametrize('name', ['modular', 'maml_cl'])
def test_meta_steps_on_1_2_4_8_devices_give_the_same_meta_params(many, name):
  assert many['devices'] == 8
  runs = many[name]
  for n in ('2', '4', '8'):
    close(runs[n], runs['1'])
  assert differs(runs['1'], runs['0'])       # the steps moved the meta-params


@slow
def test_experts_split_over_an_expert_axis_give_the_same_meta_params(many):
  close(many['modular']['4x2'], many['modular']['1'])


@slow
def test_a_one_device_mesh_is_bit_identical_to_no_mesh(many):
  runs = many['modular']
  for x, y in zip(runs['1'], runs['none'], strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@slow
@pytest.mark.parametrize('name', ['modular', 'maml_cl'])
def test_sharded_evaluation_equals_one_device(many, name):
  """3 signals over 4 devices: padded with a copy of the last, whose rows are dropped."""
  one, four = many['eval_' + name]['one'], many['eval_' + name]['four']
  assert set(one['values']) == set(four['values']) and 'psnr' in one['values']
  for metric, curve in one['values'].items():
    assert np.asarray(curve).shape == (3, 3)
    np.testing.assert_allclose(four['values'][metric], curve, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(four['kept'], one['kept'], rtol=1e-5, atol=1e-5)
  close(four['final'], one['final'])


@slow
def test_a_meta_batch_that_does_not_divide_the_data_axis_is_a_one_line_error(many):
  for key in ('run_error', 'meta_train_error'):
    text = many[key]
    assert text and '\n' not in text
    assert 'config.meta.batch_size=3' in text and 'data axis (8 devices)' in text
  assert 'workdir' not in many['written']          # refused before anything is written
  assert 'mesh.data x mesh.expert = 3 x 2 != 8 devices' in many['mesh_error']


def test_mesh_sizes_that_do_not_fit_the_devices_are_one_line_errors():
  n = jax.device_count()
  helpers.one_line_error(f'3 x 1 != {n} devices', distributed.make_mesh, 3)
  helpers.one_line_error(f'mesh.expert={n + 1} does not divide', distributed.make_mesh, 0,
                         n + 1)
  helpers.one_line_error('use data >= 0', distributed.make_mesh, -1)
  helpers.one_line_error('expert >= 1', distributed.make_mesh, 0, 0)


def test_the_default_mesh_puts_every_device_on_data():
  mesh = distributed.mesh_of(helpers.tiny_config())
  assert dict(mesh.shape) == {'data': jax.device_count(), 'expert': 1}
  assert distributed.process_rows(mesh, 8) == slice(0, 8)
  np.testing.assert_array_equal(meta.process_slice(np.arange(8), mesh), np.arange(8))


def test_one_process_is_main_and_its_barriers_return():
  assert distributed.is_main()
  assert distributed.main_first(lambda: 3, 'x') == 3
  assert distributed.on_main(lambda: 4, 'y') == 4


def test_collectives_are_read_from_hlo_text():
  hlo = '''
  %all-reduce.8 = (f32[8,3]{1,0}, /*index=1*/f32[3]{0}, bf16[] ) all-reduce(%a, %b), channel_id=7
  %all-to-all.2 = f32[2,4]{1,0} all-to-all(%c), channel_id=8
  %ag = s32[10]{0} all-gather-start(%d)
  %x = f32[5]{0} add(%e, %f)
  '''
  found = distributed.collectives(hlo)
  assert found == {'all-reduce': {'count': 1, 'bytes': 4 * 24 + 4 * 3 + 2},
                   'all-to-all': {'count': 1, 'bytes': 32},
                   'all-gather': {'count': 1, 'bytes': 40}}
  assert distributed.describe({}) == 'none'
  assert 'all-to-all x1' in distributed.describe(found)
