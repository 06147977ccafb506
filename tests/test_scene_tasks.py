"""Scene predictions: rendering whole views in chunks equals rendering them at once, and
the chunks run as one loop (the field is traced once, not once per chunk); drawn
training rays (with a jitter seed column) chunk alike. (Pools, draws and the learners'
use of them: tests/test_fresh_rays.py.)"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax.tasks.scene import SceneTasks


def scene_tasks(chunk: int) -> SceneTasks:
  return SceneTasks(grid=(2, 2), bounds=(-1.0, 1.0, -1.0, 1.0), near=0.5, far=3.0,
                    image_shape=(5, 7), query_views=1, rays_per_task=8, num_samples=8,
                    chunk=chunk)


def rays(n: int) -> jax.Array:
  rng = np.random.default_rng(0)
  origin = np.concatenate([rng.uniform(-1, 1, (n, 2)), np.full((n, 1), 2.0)], -1)
  direction = np.concatenate([rng.normal(0, 0.3, (n, 2)), -np.ones((n, 1))], -1)
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  return jnp.asarray(np.concatenate([origin, direction], -1), jnp.float32)


def test_chunked_prediction_equals_one_pass_and_compiles_the_chunk_once():
  chex.clear_trace_counter()
  params = {'w': jax.random.normal(jax.random.key(0), (6, 4))}

  def field(p, points):
    return jnp.tanh(points @ p['w'])

  whole = jax.jit(scene_tasks(4096).predictor(field))(params, rays(35))
  chunked = jax.jit(scene_tasks(8).predictor(chex.assert_max_traces(field, n=1)))
  out = chunked(params, rays(35))                 # 5 chunks of 8 rays, the last padded
  np.testing.assert_allclose(chunked(params, rays(35)), whole, atol=1e-6)
  assert out.shape == (35, 3)


@pytest.mark.slow
def test_drawn_training_rays_render_alike_in_chunks_and_at_once():
  params = {'w': jax.random.normal(jax.random.key(0), (6, 4))}
  field = lambda p, points: jnp.tanh(points @ p['w'])
  tasks = scene_tasks(4096)
  drawn, _ = tasks.draw(rays(35), jnp.zeros((35, 3)), 2, 35)
  assert drawn.shape == (35, 7)
  whole = jax.jit(tasks.predictor(field))(params, drawn)
  chunked = jax.jit(scene_tasks(8).predictor(field))(params, drawn)
  np.testing.assert_allclose(chunked, whole, atol=1e-6)
  assert not np.allclose(whole, jax.jit(tasks.predictor(field))(params, rays(35)))
