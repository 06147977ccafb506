"""The trivial answer: each signal predicted by its own mean (an image's mean colour,
silence for speech, a block's mean view colour), whatever the step count.

A row beside every table so a learned init is never credited for what a constant does:
an init that outputs zeros "beats random init" on speech while having learned nothing.
It learns from the whole signal at once (all tasks' context), like an offline learner.
"""
import jax.numpy as jnp

from mclnf_jax.learners import base
from mclnf_jax.learners.setup import Setup


def make(setup: Setup) -> base.Learner:
  del setup

  def adapt(state, episode, steps):
    del state, steps
    y = episode.context_y
    return {'mean': jnp.mean(y.reshape(-1, y.shape[-1]), axis=0)}

  def predict(state, x):
    return jnp.broadcast_to(state['mean'], x.shape[:1] + state['mean'].shape)

  # Not resumable: every step count starts from `start` (its state has no output width yet).
  return base.Learner(
      name='mean', meta_learned=False, resumable=False, init=lambda key: {},
      start=lambda params: {'mean': jnp.zeros(())}, adapt=adapt, predict=predict)
