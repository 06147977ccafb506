"""Ours (MIM): `mcl` with the FIM loss (eq. 2-3) in the inner loop and meta-objective.

The loss comes from `config.methods.mcl_fim.loss = 'fim'` and `config.fim` (lambda,
estimator); everything else is the modular learner.
"""
from mclnf_jax.learners.mcl import modular


def make(setup):
  return modular('mcl_fim', setup)
