"""MOL (LearnedInit, Tancik et al., 2021): a meta-learned init, k steps on the whole signal.

The meta-offline upper bound of the paper (Meta (UB)): it sees every task at once, so it
never meets forgetting; like OL its adaptation is resumable.
"""
from mclnf_jax.learners.single import single_network


def make(setup):
  return single_network('mol', setup, meta_learned=True, offline=True)
