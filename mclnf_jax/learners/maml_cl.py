"""MAML+CL: a meta-learned init, then tasks in sequence on one network (eq. 1)."""
from mclnf_jax.learners.single import single_network


def make(setup):
  return single_network('maml_cl', setup, meta_learned=True, offline=False)
