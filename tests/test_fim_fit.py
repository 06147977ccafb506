"""launch/fim_fit.py: the FIM loss against the MSE on one task from random init."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from launch import fim_fit
from mclnf_jax import learners, losses
from tests import helpers


def _task():
  config = helpers.tiny_config('modular_fim')
  field = learners.build_setup(config, 'modular_fim', helpers.tiny_spec()).field
  episode = helpers.tiny_episodes(1)
  x, y = (jnp.asarray(a[0, 0]) for a in (episode.context_x, episode.context_y))
  return config, field, x, y


def test_lam_zero_is_adam_on_the_mse_and_its_statistics_describe_the_fit():
  config, field, x, y = _task()
  init = field.init(jax.random.key(0))
  out = fim_fit.fit(field.apply, init, x, y, config.fim, 0.0, 1e-2, 8, {4, 8})
  params, opt = init, optax.adam(1e-2)                 # the same fit, by hand
  state = opt.init(params)
  for _ in range(8):
    grads = jax.grad(lambda p: losses.mse(field.apply, p, x, y))(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  residual = np.asarray(field.apply(params, x) - y)
  np.testing.assert_allclose(out[8]['psnr'], -10 * np.log10(np.mean(residual ** 2)), rtol=1e-4)
  np.testing.assert_allclose(out[8]['max_error'], np.abs(residual).max(), rtol=1e-4)
  assert out[8]['p99_error'] <= out[8]['max_error']
  assert 0 < out[8]['weights_ess'] <= 1 and out[8]['max_weight'] >= 1   # mean-one weights
  assert out[8]['psnr'] > out[4]['psnr']


def test_a_positive_lam_fits_another_trajectory():
  config, field, x, y = _task()
  init = field.init(jax.random.key(0))
  mse, fim = (fim_fit.fit(field.apply, init, x, y, config.fim, lam, 1e-2, 4, {4})[4]
              for lam in (0.0, 1.0))
  assert mse['psnr'] != fim['psnr']
