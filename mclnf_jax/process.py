"""Process settings shared by the command-line entry points (main, bench, launch/)."""
import os


def configure(keep_memory: bool = True) -> bool:
  """What every entry point calls first: one BLAS thread, and (keep_memory) freed memory
  kept; returns whether it is kept."""
  limit_blas_threads()
  return keep_memory and keep_freed_memory()


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


# What keep_freed_memory sets, as the environment variables that set it at start-up
# (for subprocesses), and each one's mallopt parameter (malloc.h).
KEEP_FREED_MEMORY_ENV = {'MALLOC_ARENA_MAX': '1', 'MALLOC_MMAP_MAX_': '0',
                         'MALLOC_TRIM_THRESHOLD_': str(2**31 - 1)}
_MALLOPT = {'MALLOC_ARENA_MAX': -8, 'MALLOC_MMAP_MAX_': -4, 'MALLOC_TRIM_THRESHOLD_': -1}
MALLOC_ENV = ('MALLOC_ARENA_MAX', 'MALLOC_MMAP_MAX_', 'MALLOC_TRIM_THRESHOLD_',
              'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TOP_PAD_', 'GLIBC_TUNABLES')


def keep_freed_memory() -> bool:
  """Tell glibc's malloc to keep freed memory for reuse; True if it was told.

  XLA:CPU allocates a jitted call's temporaries (hundreds of MiB for a meta-step) afresh
  at every call; by default glibc serves such blocks with mmap and unmaps them on free,
  so each call page-faults them in again (BUILD_NOTES, "Benchmark"). With mmap off, one
  arena and no trimming, freed blocks stay mapped and the next call reuses them: faster
  steps for a resident set about one call's temporaries larger. Does nothing where the
  user set any of glibc's malloc variables (set e.g. MALLOC_ARENA_MAX=8 to keep glibc's
  defaults), or off glibc. Subprocesses get the same with KEEP_FREED_MEMORY_ENV.
  """
  if any(k in os.environ for k in MALLOC_ENV):
    return False
  import ctypes
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except AttributeError:       # not glibc (musl, macOS): nothing to tell
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return all(mallopt(_MALLOPT[k], int(v)) == 1 for k, v in KEEP_FREED_MEMORY_ENV.items())
