"""MEIL-NeRF: self-distillation on inputs replayed from earlier tasks only."""
import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax import learners
from mclnf_jax.learners import meil_nerf
from tests import helpers

EPISODE = jax.tree.map(lambda x: jnp.asarray(x[0]), helpers.tiny_episodes(1))


def test_replayed_inputs_come_from_earlier_tasks_only():
  x = jnp.arange(4 * 5, dtype=jnp.float32).reshape(4, 5, 1)   # task t holds 5t..5t+4
  for t in range(1, 4):
    replay = np.asarray(meil_nerf.replay_inputs(x, jnp.int32(t), 64))
    assert replay.max() < 5 * t and replay.min() >= 0


def build(**values):
  config = helpers.tiny_config()
  config.methods.meil_nerf.update(width=8, tto_opt='sgd', tto_lr=0.05, **values)
  config.methods.cl.update(width=8, tto_opt='sgd', tto_lr=0.05)
  modality = helpers.tiny_spec()
  return (learners.build(config, 'meil_nerf', modality),
          learners.build(config, 'cl', modality))


def first_task_error(learner, steps):
  state = learner.start(learner.init(jax.random.key(0)))
  state = jax.jit(learner.adapt)(state, EPISODE, jnp.int32(steps))
  pred = learner.predict(state, EPISODE.context_x[0])
  return float(jnp.mean((pred - EPISODE.context_y[0]) ** 2))


def test_equals_cl_without_replay_weight_and_forgets_less_with_it():
  plain, cl = build(replay_lambda=0.0)
  assert abs(first_task_error(plain, 20) - first_task_error(cl, 20)) < 1e-7
  strong, _ = build(replay_lambda=2.0)
  assert first_task_error(strong, 20) < first_task_error(cl, 20)
