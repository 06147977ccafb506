import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax.fields import Field, param_count
from mclnf_jax.fields import experts
from mclnf_jax.fields.siren import Siren


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
