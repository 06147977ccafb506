"""Numerics stay finite over the documented ranges: FIM weights (lam up to 1e3), inner
learning rates of the configs (1e-2 .. 1, SGD), SIREN w0 up to 3000, float32 targets of
large magnitude, and render weights of rays that miss everything (or hit a wall)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import learners, losses, meta, render
from mclnf_jax.fields import Field
from mclnf_jax.fields.siren import Siren
from tests import helpers

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

X = jax.random.uniform(jax.random.key(1), (16, 2), minval=-1, maxval=1)


def finite(tree) -> bool:
  return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('w0', [30.0, 300.0, 3000.0])
@pytest.mark.parametrize('first', [True, False])
def test_siren_outputs_and_gradients_are_finite_up_to_w0_3000(w0, first):
  field = Field(Siren(width=16, depth=3, out_dim=3, w0=30.0 if first else w0,
                      w0_first=w0 if first else 0.0), in_dim=2)
  params = field.init(jax.random.key(0))
  out = field.apply(params, X * 10)
  assert finite(out) and float(jnp.abs(out).max()) < 1e3
  grads = jax.grad(lambda p: losses.mse(field.apply, p, X, jnp.zeros((16, 3))))(params)
  assert finite(grads)


@pytest.mark.parametrize('scale', [1e3, 1e6, 1e12])
@pytest.mark.parametrize('lam', [0.0, 1.0, 1e3])
def test_losses_of_large_float32_targets_are_finite(scale, lam):
  field = Field(Siren(width=8, depth=3, out_dim=2, w0=30.0), in_dim=2)
  params = field.init(jax.random.key(0))
  y = jnp.asarray(np.random.default_rng(0).uniform(-scale, scale, (16, 2)), jnp.float32)
  for loss in (lambda p: losses.mse(field.apply, p, X, y),
               lambda p: losses.fim_weighted_mse(field.apply, p, X, y, lam=lam,
                                                 fisher='diag')):
    value, grads = jax.value_and_grad(loss)(params)
    assert np.isfinite(float(value)) and finite(grads)


@pytest.mark.parametrize('kind', ['diag', 'kfac', 'exact'])
def test_fim_weights_at_lam_1e3_on_a_fitted_and_a_constant_signal(kind):
  field = Field(Siren(width=5, depth=3, out_dim=2, w0=30.0), in_dim=2)
  params = field.init(jax.random.key(0))
  for y in (field.apply(params, X), jnp.zeros((16, 2))):      # zero and tiny residuals
    _, w = losses.fim_weighted_mse(field.apply, params, X, y, lam=1e3, fisher=kind,
                                   return_weights=True)
    assert finite(w) and float(w.min()) > 0


@pytest.mark.parametrize('name, inner_lr', [('maml_cl', 1e-2), ('maml_cl', 0.1),
                                            ('maml_cl', 1.0), ('modular', 1.0)])
def test_meta_loss_and_gradient_are_finite_across_inner_rates(name, inner_lr):
  config = helpers.tiny_config(name)
  config.methods[name].inner_lr = inner_lr
  config.meta.inner_steps = 3
  learner = learners.build(config, name, helpers.tiny_spec())
  params = learner.init(jax.random.key(0))
  batch = jax.tree.map(jnp.asarray, helpers.tiny_episodes(2))
  (loss, _), grads = jax.value_and_grad(
      lambda p: meta.batch_loss(learner, p, batch), has_aux=True)(params)
  assert np.isfinite(float(loss)) and finite(grads)


def test_render_weights_of_rays_that_miss_everything():
  """Empty space (sigma = 0): no weight, the background colour, depth at `far`."""
  t = render.sample_along_rays(None, 4, 8, 2.0, 6.0, stratified=False)
  dirs = jnp.tile(jnp.asarray([[0.0, 0.0, -1.0]]), (4, 1))
  background = jnp.asarray([1.0, 0.5, 0.0])
  out = render._composite(jnp.full((4, 8, 3), 0.3), jnp.zeros((4, 8)), t, dirs, 2.0, 6.0,
                          background, None)  # pylint: disable=protected-access
  assert finite(out)
  np.testing.assert_array_equal(out['weights'], 0.0)
  np.testing.assert_allclose(out['rgb'], np.tile(background, (4, 1)))
  np.testing.assert_allclose(out['depth'], 6.0)


@pytest.mark.parametrize('sigma', [1e3, 1e10, 1e38])
def test_render_weights_of_rays_that_hit_an_opaque_wall(sigma):
  t = render.sample_along_rays(None, 2, 8, 2.0, 6.0, stratified=False)
  delta = render.interval_lengths(t, 2.0, 6.0, last_delta=1e10)
  w = render.compositing_weights(jnp.full((2, 8), sigma, jnp.float32), delta)
  assert finite(w)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  assert float(w[:, 0].min()) > 0.99                 # everything stops at the first sample


def test_render_of_a_field_with_huge_raw_outputs_is_finite():
  """softplus/sigmoid of raw outputs of +-1e30 (a diverged field) stay finite."""
  apply_fn = lambda params, x: jnp.where(jnp.arange(4) % 2 == 0, 1e30, -1e30) * \
      jnp.ones((x.shape[0], 4))
  origins = jnp.zeros((3, 3))
  dirs = jnp.tile(jnp.asarray([[0.0, 0.0, -1.0]]), (3, 1))
  rgb, sigma = render._query(apply_fn, None, origins, dirs,  # pylint: disable=protected-access
                             render.sample_along_rays(None, 3, 4, 2.0, 6.0, False))
  assert finite(rgb) and finite(sigma)
