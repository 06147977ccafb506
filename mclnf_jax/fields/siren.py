"""SIREN: a coordinate MLP with sine activations (Sitzmann et al., 2020).

`depth` counts linear layers: depth-1 sine layers of `width`, then a linear head. With
depth=5, width=256, 2 -> 3 this has 198,915 parameters, the paper's single network;
with width=128 it has 50,307, so 4 experts hold 201,228 (the paper's 201.23K).
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _uniform(limit: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


class SineDense(nn.Module):
  """Dense layer with Sitzmann et al. initialisation.

  First layer: W ~ U(-1/fan_in, 1/fan_in); later layers: U(-sqrt(6/fan_in)/w0, ...), so
  that sin(w0 * (W x + b)) keeps unit-variance pre-activations at any depth. Biases
  follow the usual U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  """
  features: int
  w0: float
  is_first: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    limit = 1.0 / fan_in if self.is_first else (6.0 / fan_in) ** 0.5 / self.w0
    return nn.Dense(self.features, kernel_init=_uniform(limit),
                    bias_init=_uniform(fan_in ** -0.5))(x)


class Siren(nn.Module):
  """[N, d_in] coordinates in [-1, 1] -> [N, d_out] signal values.

  Pre-activations pass through `self.perturb` so that the FIM loss can read
  per-sample output gradients of every dense layer without per-sample backprops.
  """
  width: int
  depth: int
  out_dim: int
  w0: float = 30.0
  sine: str = 'exact'   # name of a sine in fields.sine; 'exact' is jnp.sin

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    from mclnf_jax.fields.sine import get_sine  # late import: tiny module, no cycle
    sin = get_sine(self.sine)
    for i in range(self.depth - 1):
      self.sow('intermediates', f'input_{i}', x)
      z = SineDense(self.width, self.w0, is_first=(i == 0), name=f'dense_{i}')(x)
      z = self.perturb(f'preact_{i}', z)
      x = sin(self.w0 * z)
    i = self.depth - 1
    self.sow('intermediates', f'input_{i}', x)
    out = SineDense(self.out_dim, self.w0, is_first=False, name=f'dense_{i}')(x)
    return self.perturb(f'preact_{i}', out)


def layer_dims(in_dim: int, width: int, depth: int, out_dim: int) -> Sequence[int]:
  return [in_dim] + [width] * (depth - 1) + [out_dim]


def siren_param_count(in_dim: int, width: int, depth: int, out_dim: int) -> int:
  dims = layer_dims(in_dim, width, depth, out_dim)
  return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
