"""The evaluation protocol: step lists, one compile for every step count, and resumable
learners chaining step counts to the same result as starting over."""
import chex
import jax
import numpy as np
import pytest

from mclnf_jax import evaluate, learners
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.image import ImageTasks
from mclnf_jax.types import stack_episodes
from tests import helpers

TASKS = ImageTasks(shape=(12, 12), channels=3, grid=(1, 4))     # SSIM needs 11x11
EPISODES = stack_episodes([TASKS.episode(i) for i in helpers.smooth_images(2, size=12)])


def build(name):
  return learners.build(helpers.tiny_config(name), name, task_spec(TASKS))


def test_eval_steps_are_powers_of_two_and_the_maximum():
  assert evaluate.eval_steps(8) == [1, 2, 4, 8]
  assert evaluate.eval_steps(12) == [1, 2, 4, 8, 12]
  assert evaluate.eval_steps(1) == [1]


def traced_once(learner):
  """The learner with an adapt that fails if jit traces it more than once."""
  return learner._replace(adapt=chex.assert_max_traces(learner.adapt, n=1))


@pytest.mark.parametrize('name', ['modular', 'cl'])
def test_one_compile_serves_every_step_count(name):
  chex.clear_trace_counter()
  learner = build(name)
  evaluator = evaluate.Evaluator(traced_once(learner), TASKS)
  params = learner.init(jax.random.key(0))
  values, kept, _, _ = evaluator.curves(params, EPISODES, [1, 2, 4, 8], keep=1, log=None)
  assert values['psnr'].shape == (2, 4) and kept.shape == (1, 4, 12, 12, 3)
  assert np.all(np.diff(values['psnr'], axis=1) > -1.0)   # fitting, not diverging


def test_chained_steps_equal_a_fresh_start_for_resumable_learners():
  learner = build('modular')
  assert learner.resumable
  evaluator = evaluate.Evaluator(learner, TASKS)
  params = learner.init(jax.random.key(0))
  chained = evaluator.curves(params, EPISODES, [1, 3], log=None)[0]['psnr'][:, 1]
  fresh = evaluator.curves(params, EPISODES, [3], log=None)[0]['psnr'][:, 0]
  np.testing.assert_allclose(chained, fresh, rtol=1e-5)
