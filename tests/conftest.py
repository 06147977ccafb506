"""Shared test settings: a persistent XLA cache (compiles dominate on 2 cores) and the
entry points' one OpenBLAS thread."""
import os

import jax

from mclnf_jax import process

jax.config.update('jax_compilation_cache_dir',
                  os.path.expanduser('~/.cache/mclnf_jax/xla_tests'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
process.limit_blas_threads()
