"""Ours (MIM): the modular learner with the FIM loss (eq. 2-3) in inner loop and meta-loss.

The loss comes from `config.methods.modular_fim.loss = 'fim'` and `config.fim` (lambda,
estimator); everything else is the modular learner.
"""
from mclnf_jax.learners.modular import modular


def make(setup):
  return modular('modular_fim', setup)
