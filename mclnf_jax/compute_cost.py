"""Table 6 of the paper: parameters, peak memory and test-time-optimisation speed.

An episode is one signal adapted for `steps` steps on each of its tasks (the paper: a
180x180 image as 4 tasks, 128 steps each, batch 1). Peak memory is what XLA plans for
the compiled adaptation (arguments + outputs + temporaries, `memory_analysis()`) on any
backend; on a GPU the device's own peak counter is reported beside it when available.
"""
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from mclnf_jax.fields import param_count
from mclnf_jax.learners.base import Learner
from mclnf_jax.types import Episode

MIB = 2**20


def adapted_param_count(learner: Learner, meta_params: Any) -> int:
  """Parameters of the adapted field(s): every expert, but no optimiser or buffer state."""
  state = jax.eval_shape(learner.start, meta_params)
  return sum(param_count(state[k]) for k in ('params', 'rln', 'pln') if k in state)


def planned_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def tto_cost(learner: Learner, meta_params: Any, episode: Episode, steps: int,
             repeats: int = 3) -> dict[str, float]:
  """{'parameters', 'peak_memory_mib', 'episodes_per_s'} of adapting one signal."""
  episode = jax.tree_util.tree_map(jnp.asarray, episode)
  state0 = learner.start(meta_params)
  compiled = jax.jit(learner.adapt).lower(state0, episode, jnp.int32(steps)).compile()
  jax.block_until_ready(compiled(state0, episode, jnp.int32(steps)))       # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(state0, episode, jnp.int32(steps)))
    times.append(time.perf_counter() - t0)
  return {'parameters': adapted_param_count(learner, meta_params),
          'peak_memory_mib': planned_bytes(compiled) / MIB,
          'episodes_per_s': 1.0 / statistics.median(times)}
