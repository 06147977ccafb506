"""What every learner is built from: the field, the task spec and the optimisers.

Meta-learned learners ask the setup for their meta-params and optimisers through
`meta_init`, `params_of`, `inner_for` and `tto_for`, so Meta-SGD (learned inner rates,
`method.meta_sgd`) is one switch here rather than a change to every learner: its
meta-params are {'init': field params, 'log_lr': a log rate per tensor or parameter}.
"""
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mclnf_jax.fields import Field
from mclnf_jax.learners.base import learned_sgd
from mclnf_jax.types import ApplyFn, LossFn, Params


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
