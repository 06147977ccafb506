import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax.fields import Field, param_count
from mclnf_jax.fields import experts
from mclnf_jax.fields.siren import Siren
from tests import helpers


def small_field(width=8, depth=3, out_dim=3):
  return Field(Siren(width=width, depth=depth, out_dim=out_dim, w0=30.0), in_dim=2)


@pytest.mark.parametrize('width,expected', [(256, 198_915), (128, 50_307)])
def test_paper_parameter_counts(width, expected):
  field = Field(Siren(width=width, depth=5, out_dim=3), in_dim=2)
  params = jax.eval_shape(field.init, jax.random.key(0))
  assert param_count(params) == expected
  if width == 128:
    assert 4 * param_count(params) == 201_228   # the paper's 201.23K for 4 experts


def test_sitzmann_init_limits():
  params = Field(Siren(width=64, depth=3, out_dim=3, w0=30.0), in_dim=2).init(jax.random.key(1))
  first, hidden = params['dense_0']['kernel'], params['dense_1']['kernel']
  assert float(jnp.abs(first).max()) <= 1 / 2
  assert float(jnp.abs(first).max()) > 0.4          # fills its range
  limit = np.sqrt(6 / 64) / 30
  assert float(jnp.abs(hidden).max()) <= limit
  assert float(jnp.abs(hidden).max()) > 0.9 * limit


def test_grow_appends_copies_of_shared_init():
  field = small_field()
  shared = field.init(jax.random.key(0))
  stacked = experts.experts_from_shared(shared, 3)
  assert jax.tree.leaves(stacked)[0].shape[0] == 3
  other = field.init(jax.random.key(1))
  grown = experts.grow(stacked, other)
  assert jax.tree.leaves(grown)[0].shape[0] == 4
  for leaf_s, leaf_o, leaf_g in zip(jax.tree.leaves(shared), jax.tree.leaves(other),
                                    jax.tree.leaves(grown)):
    np.testing.assert_array_equal(leaf_g[1], leaf_s)
    np.testing.assert_array_equal(leaf_g[3], leaf_o)


@pytest.mark.slow
def test_routed_apply_picks_each_inputs_expert():
  field = small_field()
  keys = jax.random.split(jax.random.key(0), 3)
  stacked = jax.vmap(field.init)(keys)
  x = jax.random.uniform(jax.random.key(2), (10, 2), minval=-1, maxval=1)
  choice = jnp.arange(10) % 3
  router = lambda inputs: jax.nn.one_hot(choice, 3)
  out = experts.routed_apply(field, router)(stacked, x)
  for i in range(10):
    params_i = jax.tree.map(lambda p: p[choice[i]], stacked)
    np.testing.assert_allclose(out[i], field.apply(params_i, x[i:i + 1])[0], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('n,block', [(10, 4096), (300, 16), (1000, 64)])
def test_routed_apply_equals_every_expert_weighted(n, block):
  """Each input through its own expert only (blocks sorted by expert) gives the dense
  mixture's numbers: uneven counts, an expert with no input, under jit and vmap."""
  field = small_field(width=16)
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(0), 4))
  x = jax.random.uniform(jax.random.key(3), (2, n, 2), minval=-1, maxval=1)
  # Expert 2 gets nothing; expert 0 most inputs.
  choice = jnp.where(x[..., 0] < 0.2, 0, jnp.where(x[..., 1] < 0, 1, 3))
  def router_of(c):
    return lambda inputs: jax.nn.one_hot(c, 4)
  fast = jax.jit(jax.vmap(lambda xs, c: experts.routed_apply(field, router_of(c), block)(
      stacked, xs)))(x, choice)
  dense = jax.vmap(lambda xs, c: experts.dense_routed_apply(field, router_of(c))(
      stacked, xs))(x, choice)
  np.testing.assert_allclose(fast, dense, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_scene_predictions_unchanged_by_bucketed_routing():
  """Whole-view NeRF renders of 4 experts (the evaluation path, several chunks): the same
  RGB, depth and opacity as evaluating every expert on every sample."""
  from mclnf_jax.fields.nerf import NeRFMLP
  from mclnf_jax.tasks.scene import SceneTasks
  scene = SceneTasks(grid=(2, 2), bounds=(-1.0, 1.0, -1.0, 1.0), near=0.1, far=3.0,
                     image_shape=(8, 8), query_views=1, rays_per_task=8, num_samples=8,
                     chunk=64)
  field = Field(NeRFMLP(depth=2, width=16, pos_freqs=4, dir_freqs=2, skip=False), in_dim=6)
  stacked = jax.vmap(field.init)(jax.random.split(jax.random.key(1), 4))
  rays = jnp.asarray(helpers.downward_rays(200), jnp.float32)
  for cols in (rays, scene.figure_columns(rays)):
    fast = jax.jit(scene.predictor(experts.routed_apply(field, scene.route, block=256)))
    dense = jax.jit(scene.predictor(experts.dense_routed_apply(field, scene.route)))
    np.testing.assert_allclose(fast(stacked, cols), dense(stacked, cols), rtol=1e-5,
                               atol=1e-5)
