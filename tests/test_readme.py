"""README.md's python blocks run as pasted; CONFIG.md is the generated key reference."""
import os
import re
import subprocess
import sys

import pytest

from mclnf_jax.configs import reference

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, 'README.md')).read()
BLOCKS = [(README[:m.start()].count('\n') + 1, m.group(1))
          for m in re.finditer(r'^```python\n(.*?)^```', README, re.S | re.M)]


def test_readme_has_python_blocks():
  assert BLOCKS


@pytest.mark.parametrize('block', [b for _, b in BLOCKS],
                         ids=[f'README.md:{line}' for line, _ in BLOCKS])
def test_python_block_runs_as_pasted(block, tmp_path):
  """Each block alone, in a fresh interpreter in an empty folder (no workdir, no data)."""
  done = subprocess.run([sys.executable, '-c', block], capture_output=True, text=True,
                        cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=120)
  assert done.returncode == 0, done.stderr[-3000:]


def test_config_reference_is_up_to_date():
  """CONFIG.md is `python -m mclnf_jax.configs.reference > CONFIG.md`: regenerate it."""
  with open(os.path.join(REPO, 'CONFIG.md')) as f:
    assert f.read() == reference.markdown(), (
        'CONFIG.md is stale: run python -m mclnf_jax.configs.reference > CONFIG.md')


def test_readme_points_at_the_reference():
  assert '(CONFIG.md)' in README


def test_the_documented_data_root_is_the_one_data_uses():
  from mclnf_jax.configs import base
  from mclnf_jax.data import common
  assert base.EMBEDDED_ROOT == common.DEFAULT_EMBEDDED_ROOT
  assert base.base_config().data.root == base.DATA_ROOT == ''
