"""Memory of a second-order NeRF meta-step and rendering speed, for BUILD_NOTES.

python -m launch.nerf_cost --config=configs/nerf_quickstart.py [--learner=modular,modular_fim]
    [--rounds=15] [--compile_only]

Peak memory is XLA's plan for the compiled meta-step (arguments + outputs + temporaries
- aliased, `memory_analysis()`), so the paper setting (configs/nerf_city.py) can be
*computed* on a CPU by compiling without running it (--compile_only). The meta-steps of
the learners named are timed in turn, one step each per round (`--rounds`, after one
warm-up step), their medians compared with the first learner's (`meta_step_vs_first`):
ratios of steps timed in turn survive a noisy machine, single timings do not. Rays per
second time the jitted whole-view rendering of the field (`learner.predict`) over one
batch of query rays. Shapes come from the config; the arrays are synthetic (no data is
loaded). Prints one JSON line per learner.
"""
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from launch import profile_meta
from mclnf_jax import compute_cost, learners, meta, process
from mclnf_jax.types import Episode
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.scene import SceneTasks

config_flags.DEFINE_config_file('config', None, 'A NeRF config.', lock_config=True)
flags.DEFINE_list('learner', ['modular'], 'Learners whose meta-steps are measured, in turn.')
flags.DEFINE_integer('rounds', 7, 'Timed meta-steps per learner (in turn, after a warm-up).')
flags.DEFINE_bool('compile_only', False, 'Plan memory only; do not time anything.')
flags.DEFINE_integer('query_rays', 4096, 'Rays rendered per timing.')


def synthetic_batch(modality: SceneTasks, batch: int, rays: int, pool: int) -> Episode:
  """Rays looking down from above the canonical block, of the config's shapes."""
  rng = np.random.default_rng(0)
  def rays_of(n):
    origin = np.concatenate([rng.uniform(-1, 1, (n, 2)), np.full((n, 1), 1.5)], -1)
    direction = np.concatenate([rng.normal(0, 0.3, (n, 2)), -np.ones((n, 1))], -1)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return np.concatenate([origin, direction], -1).astype(np.float32)
  # Each task's context set is a pool the inner loop draws its batches from (see
  # tasks/scene.py): as many rays as the config keeps per cell.
  t, m = modality.num_tasks, pool
  one = Episode(rays_of(t * m).reshape(t, m, 6), rng.uniform(0, 1, (t, m, 3)).astype(np.float32),
                rays_of(rays), rng.uniform(0, 1, (rays, 3)).astype(np.float32))
  return jax.tree_util.tree_map(lambda x: jnp.asarray(np.stack([x] * batch)), one)


def median_seconds(fn, repeats: int = 3) -> float:
  """Median wall time of fn() over `repeats` calls after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def compiled_step(learner, config, batch) -> tuple[dict, Any, Any]:
  """(planned memory and compile time, a function running one meta-step, one returning
  the current meta-params) of a learner."""
  optimizer = meta.outer_optimizer(config.meta)
  state = meta.init_state(learner, optimizer, jax.random.key(0))
  t0 = time.perf_counter()
  compiled = meta.make_meta_step(learner, optimizer).lower(state, batch).compile()
  info = {'meta_step_peak_mib': round(compute_cost.planned_bytes(compiled) / 2**20, 1),
          'compile_s': round(time.perf_counter() - t0, 1)}
  box = {'state': state}

  def step():
    box['state'], metrics = compiled(box['state'], batch)    # donates the old state
    jax.block_until_ready(metrics)
  return info, step, lambda: box['state']['params']


def main(argv):
  del argv
  process.configure()
  config, f = flags.FLAGS.config, flags.FLAGS
  r, s = config.render, config.scene
  modality = SceneTasks(grid=tuple(config.tasks.grid), bounds=(-1.0, 1.0, -1.0, 1.0),
                        near=0.1, far=4.0, image_shape=(config.data.resolution,) * 2,
                        query_views=1, rays_per_task=s.rays_per_task,
                        tto_rays_per_task=s.tto_rays_per_task, pool_rays=s.pool_rays,
                        query_rays_per_task=s.query_rays_per_task, stratified=s.stratified,
                        num_samples=r.num_samples, hierarchical_samples=r.hierarchical_samples,
                        chunk=r.chunk)
  built = {name: learners.build(config, name, task_spec(modality)) for name in f.learner}
  m = config.meta
  # pool_rays 0 keeps every ray of a cell's views: views_per_cell views of the resolution.
  pool = s.pool_rays or s.views_per_cell * config.data.resolution ** 2
  batch = synthetic_batch(modality, m.batch_size, f.query_rays, pool)
  out, steps, params = {}, {}, {}
  for name, learner in built.items():
    out[name] = {'config': config.name, 'learner': learner.name,
                 'backend': jax.default_backend(), 'meta_batch': m.batch_size,
                 'inner_steps': m.inner_steps, 'rays_per_task': s.rays_per_task,
                 'samples_per_ray': r.num_samples + r.hierarchical_samples}
    if learner.meta_learned:  # learners without a meta-step (ol, er, ...) render only
      info, steps[name], params[name] = compiled_step(learner, config, batch)
      out[name].update(info)
  if not f.compile_only:
    for step in steps.values():       # warm-up
      step()
    timed = profile_meta.untraced(steps, f.rounds)     # one step each per round, in turn
    first = next(iter(timed), None)
    for name, t in timed.items():
      out[name].update(meta_step_ms=round(t['ms'], 1), meta_step_rounds=f.rounds,
                       meta_step_vs_first=round(t['ms'] / timed[first]['ms'], 2))
    one = jax.tree_util.tree_map(lambda x: x[0], batch)
    for name, learner in built.items():
      render = jax.jit(learner.predict)
      meta_params = params[name]() if name in params else learner.init(jax.random.key(0))
      fast = learner.start(meta_params)
      sec = median_seconds(lambda: jax.block_until_ready(render(fast, one.query_x)))
      out[name]['render_rays_per_s'] = round(f.query_rays / sec)
  for line in out.values():
    print(json.dumps(line))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
