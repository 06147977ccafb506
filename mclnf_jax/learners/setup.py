"""What every learner is built from: the field, the task spec and the optimisers."""
from typing import Callable, NamedTuple

import jax
import ml_collections
import optax

from mclnf_jax.fields import Field
from mclnf_jax.types import ApplyFn, LossFn


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
