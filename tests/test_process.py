"""Process settings of the entry points."""
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
