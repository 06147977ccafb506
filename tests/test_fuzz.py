"""Fuzzed input: config overrides, transforms.json and MatrixCity blocks.

Any input either works or gives a one-line UserError (or, on the command line, one line
`error: ...` and exit status 2), never another exception. Each test runs a few dozen
examples (deadline off: the first example pays for imports).
"""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mclnf_jax.configs import base, checks
from mclnf_jax.data import matrixcity
from mclnf_jax.data import transforms_json as tj
from mclnf_jax.errors import UserError

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# ------------------------------------------------------------------ values

numbers = st.one_of(st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(numbers, st.booleans(), st.none(),
                    st.text(max_size=8), st.just('1e-3'), st.just(''))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12)


def one_line_or_fine(fn, *args, **kwargs):
  try:
    return fn(*args, **kwargs)
  except UserError as e:
    assert '\n' not in str(e), str(e)
    assert str(e)
    return None


# ------------------------------------------------------------------ config

KEYS = sorted(base.declarations())
NUMERIC = [k for k in KEYS if isinstance(base.declarations()[k].default, (int, float))
           and not isinstance(base.declarations()[k].default, bool)]


def _get(config, path):
  node = config
  for part in path.split('.'):
    node = node[part]
  return node


def _set(config, path, value):
  *sections, leaf = path.split('.')
  node = config
  for s in sections:
    node = node[s]
  node[leaf] = value


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(NUMERIC), numbers), min_size=1, max_size=4))
def test_checks_check_on_random_numeric_values(changes):
  """Values of the right type, in or out of range: fine or one line."""
  config = base.base_config()
  for path, value in changes:
    default = _get(config, path)
    value = int(value) if isinstance(default, int) and math.isfinite(value) else value
    if isinstance(default, int) and not isinstance(value, int):
      continue          # a ConfigDict keeps an int key an int (a float is a flag error)
    _set(config, path, value)
  one_line_or_fine(checks.check, config)


def _cli(argv):
  """The command line's parse: its stderr line and exit status, or None when it parses."""
  import contextlib   # pylint: disable=import-outside-toplevel
  import io   # pylint: disable=import-outside-toplevel
  from absl import flags   # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags   # pylint: disable=import-outside-toplevel
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  err = io.StringIO()
  old = checks.flags.FLAGS
  checks.flags.FLAGS = fv
  try:
    with contextlib.redirect_stderr(err):
      try:
        checks.flags_parser(argv)
        config = fv.config
      except SystemExit as e:
        return err.getvalue(), e.code
  finally:
    checks.flags.FLAGS = old
  try:
    checks.check(config)
  except UserError as e:
    return f'error: {e}\n', 2
  return None


CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'configs', 'quickstart.py')
texts = st.one_of(numbers.map(str), st.text(
    alphabet=st.characters(blacklist_categories=('Cs', 'Cc')), max_size=10),
    st.sampled_from(['nan', 'inf', '-1', '0', 'True', 'none', '(1, 2)', '[1]', "'x'",
                     '1e309', '']))


@FUZZ
@given(st.sampled_from(KEYS + ['meta.nope', 'nope', 'meta']), texts)
def test_command_line_overrides_of_random_strings(key, value):
  """--config.<key>=<anything>: parses and checks, or one line and exit status 2."""
  outcome = _cli(['prog', f'--config={CONFIG_FILE}', f'--config.{key}={value}'])
  if outcome is not None:
    line, code = outcome
    assert code == 2, line
    assert line.startswith('error: ') and line.count('\n') == 1, line


# ------------------------------------------------------------------ transforms.json

def _png(path, size=(4, 3), mode='RGB'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.new(mode, size, (128,) * len(mode)).save(path)


ROTATION = [[1, 0, 0, 0.5], [0, 1, 0, 0.1], [0, 0, 1, 3.0], [0, 0, 0, 1]]
DELETE = object()


def mutated(valid: dict, paths: list):
  """A valid file with 1-3 of its fields (any depth) replaced by random values, dropped,
  or extra frames appended (duplicates of a frame included)."""
  def mutate(meta, change):
    path, value = change
    node = meta
    try:
      for part in path[:-1]:
        node = node[part]
      if value is DELETE:
        node.pop(path[-1])
      else:
        node[path[-1]] = json.loads(json.dumps(value))
    except (KeyError, IndexError, TypeError, AttributeError):
      pass                # an earlier change replaced the path: keep the file as it is
    return meta

  def build(changes):
    meta = json.loads(json.dumps(valid))
    for change in changes:
      meta = mutate(meta, change)
    return meta
  values = st.one_of(json_values, numbers, st.just(DELETE),
                     st.just(json.loads(json.dumps(valid['frames'][0]))))
  return st.lists(st.tuples(st.sampled_from(paths), values), min_size=1,
                  max_size=3).map(build)


def _paths(frame_keys, matrix_key, top_keys):
  out = [('frames',)] + [(k,) for k in top_keys]
  for i in (0, 1):
    out += [('frames', i), ('frames', i, matrix_key)]
    out += [('frames', i, k) for k in frame_keys]
    out += [('frames', i, matrix_key, r) for r in range(4)]
    out += [('frames', i, matrix_key, r, c) for r in range(4) for c in (0, 3)]
  return out


TJ_VALID = {'camera_angle_x': 0.7, 'near': 0.5, 'far': 6.0,
            'frames': [{'file_path': 'r_0', 'transform_matrix': ROTATION},
                       {'file_path': 'r_1.png', 'transform_matrix': ROTATION}]}
TJ_PATHS = _paths(['file_path'], 'transform_matrix',
                  ['camera_angle_x', 'camera_angle_y', 'fl_x', 'fl_y', 'cx', 'cy', 'w', 'h',
                   'near', 'far'])
metas = mutated(TJ_VALID, TJ_PATHS)


@pytest.fixture(scope='module')
def scene_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp('tj')
  _png(str(folder / 'r_0.png'))
  _png(str(folder / 'r_1.png'), mode='RGBA')
  _dump(str(folder / 'transforms.json'), TJ_VALID)
  assert tj.load_transforms_json(str(folder / 'transforms.json')).images.shape[0] == 2
  return folder


def _dump(path, meta):
  with open(path, 'w') as f:
    json.dump(meta, f, allow_nan=True)


@FUZZ
@given(metas)
def test_transforms_json_of_random_fields(scene_folder, meta):
  path = str(scene_folder / 'transforms.json')
  _dump(path, meta)
  scene = one_line_or_fine(tj.load_transforms_json, path)
  if scene is not None:
    assert np.isfinite(scene.images).all() and np.isfinite(scene.c2w).all()


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 json_values.map(lambda v: json.dumps(v).encode())))
def test_transforms_json_of_random_bytes(scene_folder, data):
  path = str(scene_folder / 'transforms.json')
  with open(path, 'wb') as f:
    f.write(data)
  one_line_or_fine(tj.load_transforms_json, path)


# ------------------------------------------------------------------ MatrixCity

MC_ROT = [[r / 100 if j < 3 else r for j, r in enumerate(row)] for row in ROTATION]
MC_VALID = {'camera_angle_x': 0.7, 'frames': [{'frame_index': 0, 'rot_mat': MC_ROT},
                                              {'frame_index': 1, 'rot_mat': MC_ROT}]}
mc_metas = mutated(MC_VALID, _paths(['frame_index', 'path'], 'rot_mat', ['camera_angle_x']))


@pytest.fixture(scope='module')
def city_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('mc')
  block = root / 'small_city' / 'aerial' / 'block_1'
  _png(str(block / 'rgb' / '0000.png'))
  _png(str(block / 'rgb' / '0001.png'), mode='RGBA')
  _dump(str(block / 'transforms.json'), MC_VALID)
  assert matrixcity.load_matrixcity_block(str(root), 1, resize=None,
                                          use_cache=False).images.shape[0] == 2
  return root


@FUZZ
@given(mc_metas)
def test_matrixcity_block_of_random_fields(city_root, meta):
  _dump(str(city_root / 'small_city' / 'aerial' / 'block_1' / 'transforms.json'), meta)
  scene = one_line_or_fine(matrixcity.load_matrixcity_block, str(city_root), 1,
                           resize=None, use_cache=False)
  if scene is not None:
    assert np.isfinite(scene.images).all() and np.isfinite(scene.c2w).all()
