"""Losses of the form loss(apply_fn, params, inputs, targets) -> scalar."""
import jax
import jax.numpy as jnp


def mse(apply_fn, params, inputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over samples and channels of the squared residual."""
  return jnp.mean(jnp.square(apply_fn(params, inputs) - targets))


def by_name(name: str, fim_config=None):
  """The inner/meta loss of a learner from its config name."""
  if name == 'mse':
    return mse
  raise ValueError(f'unknown loss {name!r}: use mse')
