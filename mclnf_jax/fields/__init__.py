"""Neural fields as pure functions: `init(key) -> params`, `apply(params, x) -> y`."""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any


@dataclasses.dataclass(frozen=True)
class Field:
  """A Flax module seen as two pure functions over a params pytree.

  `apply` maps [N, in_dim] inputs to [N, out_dim] outputs; the perturbation and
  intermediate collections of the module are only used by the FIM fast path.
  """
  module: nn.Module
  in_dim: int

  def init(self, key: jax.Array) -> Params:
    return self.module.init(key, jnp.zeros((1, self.in_dim)))['params']

  def apply(self, params: Params, x: jax.Array) -> jax.Array:
    return self.module.apply({'params': params}, x)


def param_count(params: Params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))
