"""Packaging: the loss needs only the core dependencies; version, extras, LICENSE, CITATION."""
import pytest
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import tomllib

import mclnf_jax

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Top-level modules of the optional extras ([data], [audio], [video], [tf]).
OPTIONAL = ('soundfile', 'pesq', 'espeakng_loader', 'av', 'tensorflow_datasets', 'tensorflow',
            'array_record', 'skimage', 'PIL', 'dm_pix', 'matplotlib', 'importlib_resources')


def _pyproject():
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']


def _names(requirements):
  return {r.split('>')[0].split('=')[0].split('[')[0].split(';')[0].strip().lower()
          for r in requirements}


def test_the_core_modules_import_and_the_loss_runs_without_optional_packages():
  code = textwrap.dedent(f'''
      import sys
      BLOCKED = {OPTIONAL!r}
      class Block:
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{{name}} is blocked (an optional dependency)')
      sys.meta_path.insert(0, Block())
      import jax, jax.numpy as jnp
      import mclnf_jax.losses, mclnf_jax.fields, mclnf_jax.learners, mclnf_jax.meta
      from mclnf_jax.losses import fim_weighted_mse
      apply_fn = lambda p, x: jnp.tanh(x @ p['w']) @ p['v']
      params = {{'w': jnp.ones((2, 4)) * 0.3, 'v': jnp.ones((4, 1)) * 0.2}}
      x = jnp.linspace(-1, 1, 16).reshape(8, 2)
      loss = fim_weighted_mse(apply_fn, params, x, jnp.zeros((8, 1)), lam=1.0)
      assert jnp.isfinite(loss), loss
      assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]
      print('ok')
  ''')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'), cwd=REPO, timeout=300)
  assert done.returncode == 0 and done.stdout.strip() == 'ok', done.stderr[-3000:]


def test_core_dependencies_leave_out_the_extras():
  project = _pyproject()
  core = _names(project['dependencies'])
  extras = project['optional-dependencies']
  assert {'jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint', 'ml-collections',
          'absl-py', 'numpy', 'scipy', 'threadpoolctl'} == core
  for name in ('data', 'audio', 'video', 'all', 'test', 'cuda', 'tf'):
    assert name in extras
  optional = set().union(*(_names(extras[e]) for e in ('data', 'audio', 'video')))
  assert not core & optional
  assert {'soundfile', 'pesq', 'espeakng-loader'} == _names(extras['audio'])
  assert {'av'} == _names(extras['video'])
  assert {'tensorflow-datasets', 'dm-pix', 'matplotlib', 'scikit-image'} <= _names(extras['data'])
  assert extras['all'] == ['mclnf_jax[data,audio,video]']


def test_install_commands_install_every_extra():
  readme = open(os.path.join(REPO, 'README.md')).read()
  assert "pip install -e '.[all]'" in readme and "pip install -e '.[all,test]'" in readme
  assert "pip install -q -e '.[all,test]'" in open(os.path.join(REPO, '.ci', 'run')).read()


def test_version_is_the_package_metadata():
  assert mclnf_jax.__version__ == importlib.metadata.version('mclnf_jax')
  assert 'version' in _pyproject()['dynamic']


def test_license_and_citation():
  license_text = open(os.path.join(REPO, 'LICENSE')).read()
  assert 'Apache License' in license_text and 'Version 2.0, January 2004' in license_text
  assert 'END OF TERMS AND CONDITIONS' in license_text
  citation = open(os.path.join(REPO, 'CITATION.cff')).read()
  assert 'cff-version: 1.2.0' in citation
  assert 'title: "Meta-Continual Learning of Neural Fields"' in citation
  assert 'double-blind review' in citation
  assert f'version: {mclnf_jax.__version__}' in citation
