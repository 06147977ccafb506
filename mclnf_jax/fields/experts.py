"""Experts: E copies of one field stored as a single pytree with a leading expert axis.

The paper gives every task its own module started from a shared initialisation
(Algorithm 1, lines 1-5 and 19) and routes each coordinate to the module of its region
(lines 28-30). Stacking keeps every expert in one set of arrays, so E experts cost one
batched matmul per layer under `jax.vmap`; routed predictions evaluate each input with
its own expert only (`routed_apply`).
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


BLOCK = 2048    # inputs per block of the bucketed routing (one expert per block)


def routed_apply(field: Field, router: Callable[[jax.Array], jax.Array],
                 block: int = BLOCK):
  """apply(stacked, x [N, d_in]) = sum_e G_e(x) f_e(x)  (Algorithm 1, line 30), for hard
  routing: `router(x) -> [N, E]` one-hot weights (every modality's `route`), so this is
  G_e(x) f_e(x) with e the expert of x. Used only to form predictions on whole signals
  (training sends each task to its own expert).

  Each input is evaluated by its own expert only: inputs are sorted by expert into
  blocks of `block` rows, each block one expert's (a segment padded to whole blocks, so
  at most N / block + E blocks), and the experts run as one batched matmul over the
  blocks with each block's params gathered. That is about 1/E of the FLOPs of
  evaluating every expert on every input (`dense_routed_apply`, used when N is too
  small for blocks to pay); outputs agree with it to float32 rounding.
  """
  dense = dense_routed_apply(field, router)

  def apply(stacked: Params, x: jax.Array) -> jax.Array:
    n, num = x.shape[0], jax.tree_util.tree_leaves(stacked)[0].shape[0]
    size = min(block, -(-n // num))        # rows per block
    blocks = -(-n // size) + num            # every expert's segment padded to whole blocks
    if num == 1 or blocks * size >= num * n:
      return dense(stacked, x)
    weights = router(x)                                           # [N, E]
    expert = jnp.argmax(weights, axis=-1).astype(jnp.int32)       # [N]
    weight = jnp.take_along_axis(weights, expert[:, None], -1)    # [N, 1]
    order = jnp.argsort(expert, stable=True)                      # inputs by expert
    sorted_expert = expert[order]
    counts = jnp.bincount(expert, length=num)                     # [E]
    padded = -(-counts // size) * size
    seg_start = jnp.cumsum(padded) - padded                       # where expert e's rows go
    first = jnp.cumsum(counts) - counts                           # its first sorted input
    dest = seg_start[sorted_expert] + jnp.arange(n) - first[sorted_expert]
    buffer = jnp.zeros((blocks * size, x.shape[1]), x.dtype).at[dest].set(x[order])
    # Expert of each block; blocks past the last segment (padding) reuse the last expert.
    block_expert = jnp.searchsorted(jnp.cumsum(padded), jnp.arange(blocks) * size,
                                    side='right')
    block_expert = jnp.minimum(block_expert, num - 1)
    params = jax.tree_util.tree_map(lambda p: p[block_expert], stacked)
    ys = jax.vmap(field.apply)(params, buffer.reshape(blocks, size, -1))
    ys = ys.reshape(blocks * size, -1)[dest]                      # sorted inputs' outputs
    out = jnp.zeros((n, ys.shape[-1]), ys.dtype).at[order].set(ys)
    return out * weight.astype(out.dtype)
  return apply


def dense_routed_apply(field: Field, router: Callable[[jax.Array], jax.Array]):
  """apply(stacked, x [N, d_in]) = sum_e G_e(x) f_e(x) for any mixture weights `router(x)
  -> [N, E]`, evaluating every expert on every input (E forward passes)."""
  def apply(stacked: Params, x: jax.Array) -> jax.Array:
    ys = jax.vmap(field.apply, in_axes=(0, None))(stacked, x)   # [E, N, d_out]
    weights = router(x)                                          # [N, E]
    return jnp.einsum('ne,end->nd', weights.astype(ys.dtype), ys)
  return apply
