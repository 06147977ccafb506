"""Mega-NeRF's remedy at cell borders (tasks/scene.py, fields/experts.py): overlapping
pools hold the other views' rays that cross a cell's grown region and nothing else;
blended routing gives continuous weights that sum to 1 and are hard routing away from
borders; `blended_apply` evaluates each point with its nonzero-weight experts only and
equals the dense mixture; the NeRF pipeline runs with both options."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import experiment
from mclnf_jax.data import city
from mclnf_jax.data.scene import SceneSignal, views_by_cell
from mclnf_jax.errors import UserError
from mclnf_jax.fields import Field, experts
from mclnf_jax.fields.nerf import NeRFMLP
from mclnf_jax.fields.siren import Siren
from mclnf_jax.tasks.scene import SceneTasks
from tests import helpers

BOUNDS = (-1.0, 1.0, -1.0, 1.0)


def scene_tasks(**kw) -> SceneTasks:
  values = dict(grid=(2, 2), bounds=BOUNDS, near=0.1, far=3.0, image_shape=(8, 8),
                query_views=1, rays_per_task=8, num_samples=8, chunk=64)
  return SceneTasks(**{**values, **kw})


def points(xy) -> jax.Array:
  """Sample points [N, 6] at ground xy [N, 2] (z and direction fixed)."""
  xy = jnp.asarray(xy, jnp.float32)
  rest = jnp.broadcast_to(jnp.array([0.3, 0.0, 0.0, -1.0]), (xy.shape[0], 4))
  return jnp.concatenate([xy, rest], -1)


def small_field(width=16) -> Field:
  return Field(Siren(depth=2, width=width, out_dim=3), in_dim=2)


# ------------------------------------------------------------------ blended weights


def test_blended_weights_sum_to_one_are_continuous_and_hard_far_from_borders():
  tasks = scene_tasks(blend_overlap=0.2)
  assert isinstance(tasks.route, experts.Mixture) and tasks.route.experts_per_point == 4
  route = jax.jit(tasks.route)
  grid = np.stack(np.meshgrid(np.linspace(-2, 2, 201), np.linspace(-2, 2, 201)), -1)
  w = np.asarray(route(points(grid.reshape(-1, 2))))
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
  assert (w >= 0).all() and ((w > 0).sum(-1) <= 4).all()
  # Far from borders (more than 0.2 cells = 0.2 units from every other cell): exactly hard.
  far = (np.abs(grid.reshape(-1, 2)) > 0.2 + 1e-3).all(-1)
  hard = np.asarray(scene_tasks().route(points(grid.reshape(-1, 2))))
  np.testing.assert_array_equal(w[far], hard[far])
  band = (np.abs(grid.reshape(-1, 2)) < 0.2 - 1e-3).any(-1)
  assert (w[band].max(-1) < 1).all()           # inside the band several experts share
  # Continuous: along lines across the border (x = 0) and the grown edges (x = +-0.2).
  for y in (-0.7, 0.05, 0.5):
    x = np.linspace(-0.6, 0.6, 4801)
    line = np.asarray(route(points(np.stack([x, np.full_like(x, y)], -1))))
    assert np.abs(np.diff(line, axis=0)).max() < 0.01    # steps of 2.5e-4 units
    assert line[0].argmax() != line[-1].argmax()        # it does cross a border
  # At the border the two cells' experts weigh the same.
  mid = np.asarray(route(points([[0.0, -0.5]])))[0]
  np.testing.assert_allclose(mid[0], mid[1], rtol=1e-6)
  assert mid[2] == mid[3] == 0


def test_blend_overlap_is_checked_and_off_by_default():
  assert not isinstance(scene_tasks().route, experts.Mixture)
  for bad in (-0.1, 0.5):
    with pytest.raises(UserError, match='blend_overlap'):
      scene_tasks(blend_overlap=bad)
  with pytest.raises(UserError, match='cell_overlap'):
    scene_tasks(cell_overlap=-1.0)


# ------------------------------------------------------------------ blended_apply


def mixture_of(weights):
  return experts.Mixture(lambda inputs: weights, 4)


@pytest.mark.parametrize('n,block', [(300, 16), (1000, 64), (10, 4096)])
def test_blended_apply_equals_every_expert_weighted(n, block):
  """Random weights with 2 or 3 nonzero experts per input, expert 2 unused (and a
  dense fallback for tiny n): the dense mixture's numbers, under jit and vmap."""
  field = small_field()
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(0), 5))
  x = jax.random.uniform(jax.random.key(3), (2, n, 2), minval=-1, maxval=1)
  raw = jax.random.uniform(jax.random.key(4), (2, n, 5))
  keep = raw > jnp.sort(raw, -1)[..., -4:-3] * jnp.array([1, 1, 0, 1, 1])  # <= 3 nonzero
  raw = jnp.where(keep, raw, 0.0).at[..., 2].set(0.0)
  weights = raw / raw.sum(-1, keepdims=True)
  fast = jax.jit(jax.vmap(lambda xs, w: experts.routed_apply(field, mixture_of(w), block)(
      stacked, xs)))(x, weights)
  dense = jax.vmap(lambda xs, w: experts.dense_routed_apply(field, lambda _: w)(
      stacked, xs))(x, weights)
  np.testing.assert_allclose(fast, dense, rtol=1e-5, atol=1e-6)


def test_blended_apply_with_one_weight_of_one_is_hard_routing():
  field = small_field()
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(1), 4))
  x = jax.random.uniform(jax.random.key(2), (500, 2), minval=-1, maxval=1)
  one_hot = jax.nn.one_hot(jnp.where(x[:, 0] < 0.3, 0, jnp.where(x[:, 1] < 0, 1, 3)), 4)
  hard = jax.jit(experts.routed_apply(field, lambda _: one_hot, 64))(stacked, x)
  blended = jax.jit(experts.routed_apply(field, mixture_of(one_hot), 64))(stacked, x)
  np.testing.assert_allclose(blended, hard, rtol=0, atol=1e-6)


class CountingField(Field):
  """A field that records each evaluation at run time (one call per loop iteration of
  `blended_apply`, GROUP blocks under its vmap)."""
  calls = []

  def apply(self, params, x):
    jax.debug.callback(lambda: CountingField.calls.append(x.shape[0]))
    return super().apply(params, x)


def test_blended_apply_evaluates_only_nonzero_pairs():
  """Points of one expert only (as far from borders): 4096 rows in blocks of 256 are
  16 blocks, two loop iterations of 8, not the k = 4 times as many pairs' blocks."""
  field = CountingField(Siren(depth=2, width=16, out_dim=3), in_dim=2)
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(1), 4))
  x = jax.random.uniform(jax.random.key(2), (4096, 2))
  one_hot = jax.nn.one_hot(jnp.zeros(4096, jnp.int32), 4)
  apply = jax.jit(experts.routed_apply(field, mixture_of(one_hot), block=256))
  CountingField.calls.clear()
  out = jax.block_until_ready(apply(stacked, x))
  jax.effects_barrier()
  assert experts.GROUP == 8 and CountingField.calls == [256, 256]   # 2 x 8 blocks of 256
  np.testing.assert_allclose(out, field.apply(jax.tree.map(lambda p: p[0], stacked), x),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_blended_scene_renders_equal_the_dense_mixture():
  """Whole-view NeRF renders with blended routing (chunks, block path) against every
  expert on every sample, weighted by the same route."""
  scene = scene_tasks(blend_overlap=0.15)
  field = Field(NeRFMLP(depth=2, width=16, pos_freqs=4, dir_freqs=2, skip=False), in_dim=6)
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(1), 4))
  rays = jnp.asarray(helpers.downward_rays(200), jnp.float32)
  fast = jax.jit(scene.predictor(experts.routed_apply(field, scene.route, block=256)))
  dense = jax.jit(scene.predictor(experts.dense_routed_apply(field, scene.route)))
  hard = jax.jit(scene_tasks().predictor(experts.routed_apply(field, scene_tasks().route,
                                                              block=256)))
  np.testing.assert_allclose(fast(stacked, rays), dense(stacked, rays), rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(fast(stacked, rays) - hard(stacked, rays))).max() > 1e-3


# ------------------------------------------------------------------ overlapping pools


@pytest.fixture(scope='module')
def block():
  train, _, _ = city.make_city_dataset(num_blocks=2, seed=0, height=8, width=8,
                                       views_per_cell=2, heldout_views_per_cell=1)
  return train[0]


def city_tasks(block, **kw) -> SceneTasks:
  return scene_tasks(bounds=tuple(block.bounds), near=block.near, far=block.far,
                     image_shape=(8, 8), **kw)


def row_set(a) -> set:
  return set(map(tuple, np.asarray(a)[..., :6].reshape(-1, 6).round(5).tolist()))


def test_overlapping_pools_hold_own_rays_and_the_crossing_neighbour_rays_only(block):
  margin = 0.15
  tasks = city_tasks(block, cell_overlap=margin)
  episode = tasks.episode(SceneSignal(block, None))
  origins, dirs = block.rays()
  rays = np.concatenate([origins, dirs], -1).reshape(-1, 6)
  view = np.arange(len(rays)) // 64
  cells = views_by_cell(block, (2, 2), require_all=True)
  assert episode.context_x.shape == (4, len(rays), 6)      # pool: every ray of the block
  # Dense samples along each ray's visible segment (up to the ground), in xy.
  t_ground = np.where(rays[:, 5] < 0, (block.ground_z - rays[:, 2]) / rays[:, 5], np.inf)
  t_end = np.minimum(block.far, t_ground)
  t = block.near + np.linspace(0, 1, 2001)[None] * (t_end - block.near)[:, None]   # [R, S]
  xy = rays[:, None, :2] + t[..., None] * rays[:, None, 3:5]                       # [R, S, 2]
  lo, hi = tasks.grown_cells(margin)
  lo0, hi0 = tasks.grown_cells(0.0)
  margin_only = 0
  for e, own in enumerate(cells):
    gap = np.maximum(np.maximum(lo[e] - xy, xy - hi[e]), 0).max(-1).min(-1)       # [R]
    gap0 = np.maximum(np.maximum(lo0[e] - xy, xy - hi0[e]), 0).max(-1).min(-1)
    mine = np.isin(view, own)
    pool = row_set(episode.context_x[e])
    required = row_set(rays[mine | (gap == 0)])       # own rays and every crossing one
    allowed = row_set(rays[mine | (gap <= 1e-3)])     # nothing that stays away from it
    assert required <= pool <= allowed
    margin_only += (~mine & (gap == 0) & (gap0 > 1e-3)).sum()
  assert margin_only > 0                                    # the margin adds rays


def test_pools_without_overlap_are_unchanged(block):
  plain = city_tasks(block).episode(SceneSignal(block, None))
  again = city_tasks(block, blend_overlap=0.2).episode(SceneSignal(block, None))
  np.testing.assert_array_equal(plain.context_x, again.context_x)
  assert plain.context_x.shape == (4, 2 * 64, 6)


# ------------------------------------------------------------------ the pipeline


@pytest.mark.slow
def test_nerf_pipeline_runs_with_overlap_and_blending(tmp_path):
  from configs import nerf_quickstart
  c = nerf_quickstart.get_config()
  c.learners = 'modular'
  c.data.update(resolution=12, num_val=1, num_test=1)   # SSIM needs >= 11x11
  c.scene.update(num_blocks=4, views_per_cell=2, heldout_views=1, rays_per_task=16,
                 tto_rays_per_task=16, cell_overlap=0.15, blend_overlap=0.15)
  c.methods.modular.width = 8
  c.field.update(depth=2, pos_freqs=2, dir_freqs=1)
  c.render.update(num_samples=4, chunk=64)
  c.meta.update(steps=2, batch_size=1, inner_steps=1, val_every=1, log_every=1,
                save_every=2)
  c.eval.update(max_steps=2, batch_size=1, num_shown=1)
  results = experiment.run(c, str(tmp_path), 'train_and_eval')
  assert np.isfinite(results['modular']['curves']['psnr']).all()
  with open(tmp_path / 'modular' / 'config.json') as f:     # the checkpoint's keys
    assert json.load(f)['scene']['cell_overlap'] == 0.15
  scene = results['modular']['identity']['scene']             # the evaluation's
  assert scene['cell_overlap'] == scene['blend_overlap'] == 0.15
