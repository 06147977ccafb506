"""Shared test settings: a persistent XLA cache (compiles dominate on 2 cores)."""
import os

import jax

jax.config.update('jax_compilation_cache_dir',
                  os.path.expanduser('~/.cache/mclnf_jax/xla_tests'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
