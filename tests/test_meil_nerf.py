"""MEIL-NeRF: self-distillation on inputs replayed from earlier tasks only, drawn afresh
at every step, with the model as it was when the task began as the teacher."""
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
    for step in (0, 7):
      replay = np.asarray(meil_nerf.replay_inputs(x, jnp.int32(t), 64, jnp.int32(step)))
      assert replay.max() < 5 * t and replay.min() >= 0


def test_past_inputs_are_resampled_every_step():
  x = jnp.arange(4 * 50, dtype=jnp.float32).reshape(4, 50, 1)
  draws = [np.asarray(meil_nerf.replay_inputs(x, jnp.int32(3), 8, jnp.int32(k)))
           for k in range(20)]
  assert not np.array_equal(draws[0], draws[1])
  assert len(np.unique(np.concatenate(draws))) > 3 * len(np.unique(draws[0]))


def test_targets_are_the_previous_models_predictions(monkeypatch):
  """While task t is learned, the distillation targets are the predictions of the params
  at the end of task t - 1, at every step (the student moves, the teacher does not)."""
  seen = []
  original = meil_nerf.charbonnier

  def spy(residual, eps=meil_nerf.EPS):
    jax.debug.callback(lambda r: seen.append(np.asarray(r)), residual)
    return original(residual, eps)
  monkeypatch.setattr(meil_nerf, 'charbonnier', spy)
  learner, _ = build(replay_lambda=1.0, replay_size=16)
  state0 = learner.start(learner.init(jax.random.key(0)))
  two = jax.tree.map(lambda a: a[:2], EPISODE._replace(query_x=None, query_y=None))
  jax.jit(learner.adapt)(state0, two, jnp.int32(3))
  jax.effects_barrier()
  # task 2, step 0: the student is still the teacher, so the residual is exactly zero;
  # later steps: the student has moved away from its own earlier predictions.
  task2 = seen[3:]
  assert len(task2) == 3 and np.all(task2[0] == 0) and np.abs(task2[2]).max() > 0


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
