"""Experts: E copies of one field stored as a single pytree with a leading expert axis.

The paper gives every task its own module started from a shared initialisation
(Algorithm 1, lines 1-5 and 19) and routes each coordinate to the module of its region
(lines 28-30). Stacking keeps every expert in one set of arrays, so E experts cost one
batched matmul per layer under `jax.vmap`.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from mclnf_jax.fields import Field, Params


def single_expert(params: Params) -> Params:
  """Shared init [...] -> a stack of one expert [1, ...]."""
  return jax.tree_util.tree_map(lambda p: p[None], params)


def grow(stacked: Params, shared: Params) -> Params:
  """Appends one expert initialised from `shared` (Algorithm 1, line 19)."""
  return jax.tree_util.tree_map(
      lambda s, p: jnp.concatenate([s, p[None].astype(s.dtype)], axis=0), stacked, shared)


def experts_from_shared(shared: Params, num: int) -> Params:
  """The expert stack after `num` tasks have arrived: each new task grows one copy."""
  stacked = single_expert(shared)
  for _ in range(num - 1):
    stacked = grow(stacked, shared)
  return stacked


def routed_apply(field: Field, router: Callable[[jax.Array], jax.Array]):
  """apply(stacked, x [N, d_in]) = sum_e G_e(x) f_e(x)  (Algorithm 1, line 30).

  `router(x) -> [N, E]` gives the mixture weights (one-hot for hard routing). Every
  expert sees every input, so this costs E forward passes; it is only used to form
  predictions on whole signals, while training sends each task to its own expert.
  """
  def apply(stacked: Params, x: jax.Array) -> jax.Array:
    ys = jax.vmap(field.apply, in_axes=(0, None))(stacked, x)   # [E, N, d_out]
    weights = router(x)                                          # [N, E]
    return jnp.einsum('ne,end->nd', weights.astype(ys.dtype), ys)
  return apply
