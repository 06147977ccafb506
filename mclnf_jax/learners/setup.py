"""What every learner is built from: the field, the modality and the optimisers."""
from typing import NamedTuple

import ml_collections
import optax

from mclnf_jax.fields import Field
from mclnf_jax.learners.base import LossFn
from mclnf_jax.tasks import Modality


class Setup(NamedTuple):
  field: Field                            # one network (or one expert)
  modality: Modality
  loss: LossFn                            # inner-loop and meta-objective loss
  tto_opt: optax.GradientTransformation   # test-time optimiser (evaluation)
  inner_opt: optax.GradientTransformation # inner optimiser during meta-training
  inner_steps: int                        # inner steps per task during meta-training
  first_order: bool                       # first-order meta-gradient (FOMAML)
  method: ml_collections.ConfigDict       # config.methods.<name>: the learner's own keys

  @property
  def apply(self):
    """Prediction of one network, (params, x) -> y: the modality forms it from the field."""
    return self.modality.predictor(self.field.apply)
