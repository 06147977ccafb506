import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax.errors import UserError
from mclnf_jax.tasks.image import ImageTasks


@pytest.mark.parametrize('split,grid', [('grid', (1, 4)), ('grid', (2, 2)),
                                          ('resolution', (2, 2)), ('resolution', (1, 4))])
def test_tasks_cover_the_image_and_routing_agrees(split, grid):
  tasks = ImageTasks(shape=(8, 12), channels=3, grid=grid, split=split)
  image = np.random.default_rng(0).random((8, 12, 3)).astype(np.float32)
  ep = tasks.episode(image)
  assert ep.context_x.shape == (4, 24, 2) and ep.context_y.shape == (4, 24, 3)
  assert ep.context_x.min() == -1 and ep.context_x.max() == 1
  # Every pixel appears in exactly one task, with its own value.
  flat = sorted(map(tuple, ep.context_x.reshape(-1, 2).tolist()))
  assert flat == sorted(map(tuple, ep.query_x.tolist()))
  np.testing.assert_array_equal(np.asarray(tasks.to_signal(jnp.asarray(ep.query_y))), image)
  # The router sends each context coordinate to its own task's expert.
  for t in range(4):
    weights = np.asarray(tasks.route(jnp.asarray(ep.context_x[t])))
    assert (weights.argmax(-1) == t).all() and (weights.sum(-1) == 1).all()


def test_strips_are_column_blocks():
  tasks = ImageTasks(shape=(4, 8), channels=3, grid=(1, 4))
  image = np.zeros((4, 8, 3), np.float32)
  image[:, :, 0] = np.arange(8)[None, :]
  ep = tasks.episode(image)
  for t in range(4):   # task t holds columns 2t and 2t+1 (a 4x2 strip)
    assert set(ep.context_y[t, :, 0].tolist()) == {2 * t, 2 * t + 1}


def test_resolution_split_interleaves():
  tasks = ImageTasks(shape=(4, 4), channels=3, grid=(2, 2), split='resolution')
  image = np.arange(16, dtype=np.float32).reshape(4, 4, 1).repeat(3, -1)
  ep = tasks.episode(image)
  np.testing.assert_array_equal(ep.context_y[0, :, 0], image[::2, ::2, 0].ravel())
  np.testing.assert_array_equal(ep.context_y[3, :, 0], image[1::2, 1::2, 0].ravel())


@pytest.mark.parametrize('kwargs,message', [
    (dict(shape=(180, 180), grid=(1, 7)), 'does not split'),
    (dict(shape=(8, 8), grid=(4,)), 'one positive count per axis'),
    (dict(shape=(8, 8), grid=(0, 4)), 'one positive count per axis'),
    (dict(shape=(8, 8), grid=(1, 3), split='resolution'), 'does not split'),
    (dict(shape=(8, 8), grid=(1, 4), split='diagonal'), 'unknown tasks.split'),
])
def test_bad_splits_are_one_line_errors(kwargs, message):
  with pytest.raises(UserError, match=message) as e:
    ImageTasks(channels=3, **kwargs)
  assert '\n' not in str(e.value)
