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


class Siren(nn.Module):
  """[N, d_in] coordinates in [-1, 1] -> [N, d_out] signal values.

  Every dense layer sows its input and perturbs its pre-activation, so the FIM loss can
  read per-sample gradients layer by layer without per-sample backprops; both taps cost
  nothing unless their collections are asked for.
  """
  width: int
  depth: int
  out_dim: int
  w0: float = 30.0
  w0_first: float = 0.0  # frequency of the first layer; 0 = w0
  input_scale: float = 1.0  # coordinates times this (GradNCP's audio: 50, w0 30 everywhere)
  sine: str = 'exact'   # name of a sine in fields.sine; 'exact' is jnp.sin

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    from mclnf_jax.fields.sine import get_sine  # late import: tiny module, no cycle
    sin = get_sine(self.sine)
    x = x * self.input_scale
    for i, name in enumerate(self.dense_names):
      last = i == self.depth - 1
      # Sitzmann et al.: first layer U(-1/fan_in, 1/fan_in), later U(-sqrt(6/fan_in)/w0, ..),
      # so sin(w0 * z) keeps unit-variance pre-activations at any depth; biases as usual.
      fan_in = x.shape[-1]
      limit = 1.0 / fan_in if i == 0 else (6.0 / fan_in) ** 0.5 / self.w0
      self.sow('intermediates', name + '_input', x)
      z = nn.Dense(self.out_dim if last else self.width, kernel_init=_uniform(limit),
                   bias_init=_uniform(fan_in ** -0.5), name=name)(x)
      z = self.perturb(name + '_preact', z)
      w0 = self.w0_first if (i == 0 and self.w0_first) else self.w0
      x = z if last else sin(w0 * z)
    return x

  @property
  def dense_names(self) -> list[str]:
    """Dense layers in order: params[name] = {kernel, bias}; taps `name + '_input'` in
    'intermediates' (the layer input) and `name + '_preact'` in 'perturbations'."""
    return [f'dense_{i}' for i in range(self.depth)]


def layer_dims(in_dim: int, width: int, depth: int, out_dim: int) -> Sequence[int]:
  return [in_dim] + [width] * (depth - 1) + [out_dim]
