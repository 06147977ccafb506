"""What every learner is built from: the field, the task spec and the optimisers.

Meta-learned learners ask the setup for their meta-params and optimisers through
`meta_init`, `params_of`, `inner_for` and `tto_for`, so Meta-SGD (learned inner rates,
`method.meta_sgd`) is one switch here rather than a change to every learner: its
meta-params are {'init': field params, 'log_lr': a log rate per tensor or parameter}.
Likewise the batches of the inner loop (`inner_batches`, `tto_batches`) and the
meta-loss's query sets (`queries`) come from here, filled in from the TaskSpec: full
batches for grids, fresh rays every step for scenes.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mclnf_jax.fields import Field
from mclnf_jax.learners.base import Batches, learned_sgd, query_sets
from mclnf_jax.types import ApplyFn, DrawFn, Episode, LossFn, Params


class Setup(NamedTuple):
  field: Field                            # one network (or one expert)
  predict_fn: Callable[[ApplyFn], ApplyFn]  # forms predictions from a field (TaskSpec.predictor)
  route: Callable[[jax.Array], jax.Array]   # G(x): field inputs -> [N, num_tasks] weights
  num_tasks: int                          # T: experts of the modular learners
  loss: LossFn                            # inner-loop and meta-objective loss
  tto_opt: optax.GradientTransformation   # test-time optimiser (evaluation)
  inner_opt: optax.GradientTransformation # inner optimiser during meta-training
  inner_steps: int                        # inner steps per task during meta-training
  first_order: bool                       # first-order meta-gradient (FOMAML)
  method: ml_collections.ConfigDict       # config.methods.<name>: the learner's own keys
  batch: int = 0                          # TaskSpec.batch: rows per inner step (0: all)
  tto_batch: int = 0                      # TaskSpec.tto_batch: rows per test-time step
  query: int = 0                          # TaskSpec.query: meta-loss query rows per task
  draw: Optional[DrawFn] = None           # TaskSpec.draw

  @property
  def inner_batches(self) -> Batches:
    """What each inner step of meta-training fits."""
    return Batches(self.batch, self.draw)

  @property
  def tto_batches(self) -> Batches:
    """What each test-time step fits."""
    return Batches(self.tto_batch or self.batch, self.draw) if self.batch else Batches()

  def queries(self, episode: Episode) -> Episode:
    """The episode with each task's context set replaced by its meta-loss query set:
    the same context for full batches (grids), else rays drawn apart from the
    `inner_steps` batches the inner loop fits."""
    if not self.batch:
      return episode
    x, y = query_sets(episode, self.query or self.batch, self.draw,
                      fitted=self.inner_steps * self.batch)
    return episode._replace(context_x=x, context_y=y)

  @property
  def apply(self) -> ApplyFn:
    """Prediction of one network, (params, x) -> y, formed from the field."""
    return self.predict_fn(self.field.apply)

  @property
  def meta_sgd(self) -> str:
    return self.method.get('meta_sgd', '')

  def meta_init(self, key: jax.Array) -> Any:
    """The meta-params at step 0: the field's init (and log inner rates for Meta-SGD)."""
    params = self.field.init(key)
    if not self.meta_sgd:
      return params
    rate = math.log(self.method.inner_lr)
    shape = (lambda p: p.shape) if self.meta_sgd == 'param' else (lambda p: ())
    per = lambda p: jnp.full(shape(p), rate, jnp.float32)    # one buffer per leaf
    return {'init': params, 'log_lr': jax.tree_util.tree_map(per, params)}

  def params_of(self, meta: Any) -> Params:
    """The field params a signal starts from."""
    return meta['init'] if self.meta_sgd else meta

  def _rule(self, meta, fixed: optax.GradientTransformation) -> optax.GradientTransformation:
    if not self.meta_sgd:
      return fixed
    return learned_sgd(None if meta is None else jax.tree_util.tree_map(jnp.exp,
                                                                       meta['log_lr']))

  def inner_for(self, meta: Any = None) -> optax.GradientTransformation:
    """The inner-loop optimiser (its `init` needs `meta` under Meta-SGD)."""
    return self._rule(meta, self.inner_opt)

  def tto_for(self, meta: Any = None) -> optax.GradientTransformation:
    """The test-time optimiser: the learned SGD under Meta-SGD."""
    return self._rule(meta, self.tto_opt)
