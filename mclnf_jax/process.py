"""Process settings shared by the command-line entry points (main, bench, launch/)."""
import os


def limit_blas_threads() -> None:
  """One OpenBLAS thread, unless OPENBLAS_NUM_THREADS is set.

  XLA:CPU runs its LAPACK calls (the Cholesky factors of the kfac Fisher) through
  scipy's OpenBLAS, whose own threads then spin against XLA's thread pool for the rest
  of the step (BUILD_NOTES, "The FIM step"). Library users on CPU can call this too.
  """
  if 'OPENBLAS_NUM_THREADS' in os.environ:
    return
  import scipy.linalg  # pylint: disable=unused-import  (loads the OpenBLAS jaxlib calls)
  import threadpoolctl
  threadpoolctl.threadpool_limits(1, user_api='blas')
