"""Process settings of the entry points."""
import os
import subprocess
import sys

import pytest
import threadpoolctl

from mclnf_jax import process


def _openblas_threads():
  return {p['filepath']: p['num_threads'] for p in threadpoolctl.threadpool_info()
          if p['internal_api'] == 'openblas'}


def test_blas_threads_are_limited_unless_the_environment_says(monkeypatch):
  with threadpoolctl.threadpool_limits(2, user_api='blas'):
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '2')
    process.limit_blas_threads()
    assert set(_openblas_threads().values()) == {2}     # the user's choice stands
    monkeypatch.delenv('OPENBLAS_NUM_THREADS')
    process.limit_blas_threads()
    assert set(_openblas_threads().values()) == {1}  # scipy's copy included: it is loaded


# Frees a touched 64 MiB block and prints how much of it the process still holds.
_HOLD = '''
import os
import sys
import numpy as np
from mclnf_jax import process
kept = process.keep_freed_memory() if sys.argv[1] == 'keep' else False
def rss():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
before = rss()
block = np.ones(2**23)              # 64 MiB: past glibc's mmap threshold
del block
print(kept, (rss() - before) / 2**20)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc and /proc')
@pytest.mark.parametrize('how', ['keep', 'default', 'user_env'])
def test_freed_memory_is_kept_for_reuse_unless_the_user_set_malloc(how):
  env = {k: v for k, v in os.environ.items() if k not in process.MALLOC_ENV}
  if how == 'user_env':
    env['MALLOC_ARENA_MAX'] = '8'                       # the user's choice stands
  out = subprocess.run([sys.executable, '-c', _HOLD, 'keep' if how != 'default' else ''],
                       env=env, capture_output=True, text=True, timeout=120, check=True)
  kept, held_mib = out.stdout.split()
  assert kept == str(how == 'keep')
  if how == 'keep':
    assert float(held_mib) > 48        # freed, yet still mapped for the next allocation
  else:
    assert float(held_mib) < 16        # glibc's default: unmapped at free
