"""Experts: E copies of one field stored as a single pytree with a leading expert axis.

The paper gives every task its own module started from a shared initialisation
(Algorithm 1, lines 1-5 and 19) and routes each coordinate to the module of its region
(lines 28-30). Stacking keeps every expert in one set of arrays, so E experts cost one
batched matmul per layer under `jax.vmap`; routed predictions evaluate each input with
its own expert only (`routed_apply`).

A router may also mix experts (Mega-NeRF's blending near cell borders): a `Mixture`
declares at most k nonzero weights per input, and `routed_apply` then evaluates each
input with those experts only (`blended_apply`), so learners need not know which kind
of router their modality has.
"""
import dataclasses
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
GROUP = 8       # blocks evaluated per iteration of blended_apply's loop


@dataclasses.dataclass(frozen=True)
class Mixture:
  """A router G(x) -> [N, E] whose rows sum to 1 with at most `experts_per_point`
  nonzero weights each (a modality's `route` when it blends experts)."""
  weights: Callable[[jax.Array], jax.Array]
  experts_per_point: int

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.weights(x)


def experts_per_point(router: Callable[[jax.Array], jax.Array]) -> int:
  """Nonzero weights a router may give one input: a `Mixture`'s declared count, else 1
  (hard routing: one-hot rows)."""
  return getattr(router, 'experts_per_point', 1)


def routed_apply(field: Field, router: Callable[[jax.Array], jax.Array],
                 block: int = BLOCK):
  """apply(stacked, x [N, d_in]) = sum_e G_e(x) f_e(x)  (Algorithm 1, line 30), for hard
  routing: `router(x) -> [N, E]` one-hot weights (every modality's `route`), so this is
  G_e(x) f_e(x) with e the expert of x. Used only to form predictions on whole signals
  (training sends each task to its own expert). A `Mixture` router (several experts
  per input) is evaluated by `blended_apply` instead.

  Each input is evaluated by its own expert only: inputs are sorted by expert into
  blocks of `block` rows, each block one expert's (a segment padded to whole blocks, so
  at most N / block + E blocks), and the experts run as one batched matmul over the
  blocks with each block's params gathered. That is about 1/E of the FLOPs of
  evaluating every expert on every input (`dense_routed_apply`, used when N is too
  small for blocks to pay); outputs agree with it to float32 rounding.
  """
  if experts_per_point(router) > 1:
    return blended_apply(field, router, experts_per_point(router), block)
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


def blended_apply(field: Field, router: Callable[[jax.Array], jax.Array], k: int,
                  block: int = BLOCK):
  """apply(stacked, x [N, d_in]) = sum_e G_e(x) f_e(x) for weights `router(x) -> [N, E]`
  with at most k nonzero per row (Mega-NeRF's blending of the experts whose grown cells
  hold x), evaluating each input with its nonzero-weight experts only.

  The (input, expert) pairs of each row's k largest weights are sorted by expert into
  blocks of `block` rows as in `routed_apply`; pairs of weight 0 go to no block. How
  many blocks hold pairs is known only at run time, so a `while_loop` evaluates them
  `GROUP` blocks at a time and stops after the last: about (pairs / N) / E of the FLOPs
  of evaluating every expert on every input (`dense_routed_apply`, used when N is too
  small for blocks to pay). Forward only (the loop has no reverse-mode derivative):
  predictions, as `routed_apply`. A row with one weight of 1 gives f_e(x) exactly.
  """
  dense = dense_routed_apply(field, router)

  def apply(stacked: Params, x: jax.Array) -> jax.Array:
    n, num = x.shape[0], jax.tree_util.tree_leaves(stacked)[0].shape[0]
    per = min(k, num)                              # experts evaluated per input, at most
    size = min(block, -(-n // num))                # rows per block
    if num == 1 or (-(-n // size) + num) * size >= num * n:
      return dense(stacked, x)
    pairs = n * per
    groups = -(-(-(-pairs // size) + num) // GROUP)    # every pair active, padded segments
    blocks = groups * GROUP
    weights = router(x)                                           # [N, E]
    top, expert = jax.lax.top_k(weights, per)                     # [N, k] each
    top = top.reshape(-1)                                         # [P]
    pair_expert = jnp.where(top > 0, expert.reshape(-1), num).astype(jnp.int32)  # num: none
    order = jnp.argsort(pair_expert, stable=True)                 # pairs by expert
    sorted_expert = pair_expert[order]
    counts = jnp.bincount(pair_expert, length=num + 1)[:num]      # [E] active pairs
    padded = -(-counts // size) * size
    ends = jnp.cumsum(padded)
    seg_start = jnp.append(ends - padded, blocks * size)          # none: past the buffer
    first = jnp.append(jnp.cumsum(counts) - counts, jnp.sum(counts))
    dest = seg_start[sorted_expert] + jnp.arange(pairs) - first[sorted_expert]
    inputs = jnp.repeat(x, per, axis=0)[order]                    # [P, d_in] sorted pairs
    buffer = jnp.zeros((blocks * size, x.shape[1]), x.dtype).at[dest].set(
        inputs, mode='drop').reshape(blocks, size, -1)
    block_expert = jnp.minimum(jnp.searchsorted(ends, jnp.arange(blocks) * size,
                                                side='right'), num - 1)
    used = -(-(ends[-1] // size) // GROUP)                        # groups holding pairs
    first_params = jax.tree_util.tree_map(lambda p: p[0], stacked)
    shape = jax.eval_shape(field.apply, first_params, x[:1])      # one output row
    width = shape.shape[-1]

    def group(g, out):
      start = g * GROUP
      ids = jax.lax.dynamic_slice_in_dim(block_expert, start, GROUP)
      params = jax.tree_util.tree_map(lambda p: p[ids], stacked)
      ys = jax.vmap(field.apply)(params, jax.lax.dynamic_slice_in_dim(buffer, start, GROUP))
      return jax.lax.dynamic_update_slice_in_dim(out, ys, start, 0)
    out = jax.lax.fori_loop(0, used, group, jnp.zeros((blocks, size, width), shape.dtype))
    ys = out.reshape(blocks * size, width).at[dest].get(mode='fill', fill_value=0)
    ys = jnp.zeros_like(ys).at[order].set(ys)                     # pairs in input order
    mixed = ys * top[:, None].astype(ys.dtype)
    return mixed.reshape(n, per, width).sum(axis=1)
  return apply
