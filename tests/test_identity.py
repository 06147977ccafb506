"""Which config keys tie a workdir's checkpoint (declared next to each key in base.py)."""
import json
import os

import jax
import numpy as np
import optax
import pytest

from mclnf_jax import experiment, identity, learners
from mclnf_jax.configs import base, checks, keys
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality
from mclnf_jax.types import MODALITIES
from tests import helpers


def _config(modality='image', learners_='modular'):
  c = helpers.tiny_config(learners_)
  c.modality = modality
  return c


def _same(config, learner, **changes):
  other = config.copy_and_resolve_references()
  for path, value in changes.items():
    *sections, leaf = path.split('__')
    node = other
    for s in sections:
      node = node[s]
    node[leaf] = value
  return (identity.learner_identity(config, learner) ==
          identity.learner_identity(other, learner))


@pytest.mark.parametrize('path,value', [
    ('meta__log_every', 7), ('meta__save_every', 3), ('render__chunk', 64),
    ('eval__max_steps', 2), ('methods__modular__tto_lr', 0.5), ('scene__num_blocks', 3),
    ('render__num_samples', 8), ('data__frames', 2), ('data__seconds', 1.0),
    ('data__num_test', 1), ('fim__lam', 3.0), ('field__pos_freqs', 2),
    ('methods__ol__width', 4), ('name', 'other'), ('learners', 'ol,modular')])
def test_keys_an_image_run_does_not_tie(path, value):
  assert _same(_config(), 'modular', **{path: value})


@pytest.mark.parametrize('path,value', [
    ('meta__inner_steps', 5), ('meta__val_every', 1), ('meta__schedule_steps', 9),
    ('data__resolution', 16), ('data__seed', 1), ('field__w0', 10.0), ('seed', 3),
    ('methods__modular__width', 4), ('tasks__split', 'resolution')])
def test_keys_an_image_run_ties(path, value):
  assert not _same(_config(), 'modular', **{path: value})


def test_steps_tie_only_through_the_schedule():
  config = _config()
  assert not _same(config, 'modular', meta__steps=9)      # schedule_steps 0: meta.steps
  config.meta.schedule_steps = 4
  assert _same(config, 'modular', meta__steps=9)


def test_sections_and_keys_follow_the_modality_and_learner_that_read_them():
  assert _same(_config('audio'), 'modular', data__resolution=16, data__frames=2)
  assert not _same(_config('audio'), 'modular', data__seconds=1.0)
  assert not _same(_config('video'), 'modular', data__frames=2)
  assert not _same(_config('nerf'), 'modular', scene__num_blocks=3)
  assert _same(_config('nerf'), 'modular', render__chunk=64)
  assert not _same(_config(learners_='modular_fim'), 'modular_fim', fim__lam=3.0)
  nerf_field = _config()
  nerf_field.field.kind = 'nerf'
  assert not _same(nerf_field, 'modular', field__pos_freqs=2)
  assert _same(nerf_field, 'modular', field__w0=10.0)
  # A registered modality is assumed to read every section.
  assert not _same(_config('sdf2d'), 'modular', scene__num_blocks=3)


def test_results_follow_test_time_keys_and_steps():
  config = _config()
  for path, value in (('meta__steps', 9), ('eval__max_steps', 2), ('data__num_test', 1),
                      ('methods__modular__tto_opt', 'adam')):
    other = config.copy_and_resolve_references()
    *sections, leaf = path.split('__')
    node = other
    for s in sections:
      node = node[s]
    node[leaf] = value
    assert identity.eval_identity(config, 'modular') != identity.eval_identity(other, 'modular')
  other = config.copy_and_resolve_references()
  other.meta.log_every = 1
  assert identity.eval_identity(config, 'modular') == identity.eval_identity(other, 'modular')


def test_every_key_is_declared_with_a_meaning():
  declared = base.declarations()
  assert set(declared) == set(keys.flatten(base.base_config()))
  for path, decl in declared.items():
    assert decl.doc, f'{path} has no meaning in configs/base.py'
    assert decl.kind in keys.KINDS
    assert decl.used_by is None or set(decl.used_by) <= set(MODALITIES), path
    if decl.only is not None:
      assert decl.only[0].replace('{learner}', 'modular') in declared, path


def _claimed(tmp_path, config, name='modular'):
  folder = identity.check(config, str(tmp_path), name)
  os.makedirs(folder, exist_ok=True)
  identity.claim(config, folder, name)
  return folder


def test_raising_steps_needs_the_old_schedule(tmp_path):
  config = _config()
  _claimed(tmp_path, config)
  longer = config.copy_and_resolve_references()
  longer.meta.steps = 8
  message = helpers.one_line_error(r'--config\.meta\.schedule_steps=4',
                                   identity.check, longer, str(tmp_path), 'modular')
  assert 'schedule is 4 meta-steps long' in message
  longer.meta.schedule_steps = 4
  identity.check(longer, str(tmp_path), 'modular')
  longer.meta.schedule_steps = 8
  helpers.one_line_error(r'another config: meta\.schedule_steps \(4 there, 8 now\)',
                         identity.check, longer, str(tmp_path), 'modular')


def test_a_cadence_change_keeps_the_workdir(tmp_path):
  config = _config()
  _claimed(tmp_path, config)
  other = config.copy_and_resolve_references()
  other.meta.update(log_every=1, save_every=1)
  identity.check(other, str(tmp_path), 'modular')
  other.meta.inner_steps = 5
  helpers.one_line_error(r'holds a modular run of another config: meta\.inner_steps',
                         identity.check, other, str(tmp_path), 'modular')


def test_identities_stored_by_earlier_versions_are_read(tmp_path):
  """Nested sections with every key, 'method' for the learner's own, no schedule_steps."""
  config = _config()
  c = json.loads(config.to_json())
  del c['meta']['schedule_steps']
  for gone in ('meta_sgd',):
    c['methods']['modular'].pop(gone, None)
  old = {'learner': 'modular', 'seed': c['seed'], 'modality': c['modality'], 'data': c['data'],
         'tasks': c['tasks'], 'field': c['field'], 'fim': c['fim'],
         'method': {k: v for k, v in c['methods']['modular'].items() if not k.startswith('tto_')},
         'meta': c['meta'], 'scene': c['scene'], 'render': c['render']}
  folder = tmp_path / 'modular'
  folder.mkdir()
  (folder / 'config.json').write_text(json.dumps(old))
  other = config.copy_and_resolve_references()
  other.meta.log_every = 1
  identity.check(other, str(tmp_path), 'modular')
  other.meta.steps = 8
  helpers.one_line_error('schedule_steps=4', identity.check, other, str(tmp_path), 'modular')


def test_schedule_steps():
  config = _config()
  assert keys.schedule_steps(config.meta) == config.meta.steps
  config.meta.schedule_steps = 2
  assert keys.schedule_steps(config.meta) == 2
  # After the schedule's end the rate stays at its final value (what extending relies on).
  schedule = optax.cosine_decay_schedule(1.0, 2, alpha=0.1)
  assert float(schedule(2)) == pytest.approx(0.1) == float(schedule(100))
  config.meta.schedule_steps = -1
  helpers.one_line_error('meta.schedule_steps=-1 must be >= 0', checks.check, config)


def _best_params(config, workdir):
  modality = make_modality(config)
  learner = learners.build(config, 'modular', task_spec(modality))
  return experiment.meta_params(config, learner, os.path.join(workdir, 'modular'))


@pytest.mark.slow
def test_extending_a_finished_run_continues_it_exactly(tmp_path):
  config = _config()
  config.data.update(name='embedded', root=str(tmp_path / 'tfds'))
  config.meta.update(steps=2, val_every=2)
  short = str(tmp_path / 'short')
  experiment.run(config, short, 'train')
  longer = config.copy_and_resolve_references()
  longer.meta.steps = 4
  with pytest.raises(UserError, match='--config.meta.schedule_steps=2'):
    experiment.run(longer, short, 'train')
  longer.meta.update(schedule_steps=2, log_every=1)     # log cadence: no tie
  experiment.run(longer, short, 'train')
  straight = str(tmp_path / 'straight')
  experiment.run(longer, straight, 'train')
  extended, direct = _best_params(longer, short), _best_params(longer, straight)
  for a, b in zip(jax.tree_util.tree_leaves(extended), jax.tree_util.tree_leaves(direct)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
