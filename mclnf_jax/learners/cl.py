"""CL: one network from a random init, k steps on each task in order, no protection."""
from mclnf_jax.learners.single import single_network


def make(setup):
  return single_network('cl', setup, meta_learned=False, offline=False)
