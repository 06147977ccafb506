"""OL: offline learning from a random init, k steps on the whole signal."""
from mclnf_jax.learners.single import single_network


def make(setup):
  return single_network('ol', setup, meta_learned=False, offline=True)
