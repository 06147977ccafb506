"""Tiny configs and signals shared by tests (small shapes keep XLA compiles short), and
the check that bad input gives a one-line error."""
import numpy as np
import pytest

from mclnf_jax.configs import base
from mclnf_jax.errors import UserError
from mclnf_jax.tasks import task_spec
from mclnf_jax.types import stack_episodes
from mclnf_jax.tasks.image import ImageTasks


def tiny_config(learners='ol,maml_cl,modular'):
  c = base.base_config()
  c.data.update(resolution=8, num_val=2, num_test=2)
  c.field.depth = 3
  c.learners = learners
  for name in c.methods:
    c.methods[name].width = 8
  c.meta.update(steps=4, batch_size=2, lr=1e-3, inner_steps=2, val_every=2, log_every=2,
                save_every=2)
  c.eval.update(max_steps=4, batch_size=2, num_shown=1)
  return c


def embedded_config(tmp_path, learners='ol,maml_cl,modular'):
  """tiny_config on the embedded images (12x12, built under tmp_path), for whole runs."""
  c = tiny_config(learners)
  c.data.update(name='embedded', root=str(tmp_path / 'tfds'), resolution=12)
  return c


def tiny_image_tasks():
  return ImageTasks(shape=(8, 8), channels=3, grid=(1, 4))


def tiny_spec():
  return task_spec(tiny_image_tasks())


def smooth_images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
  """Random low-frequency colour images in [0, 1] (learnable, unlike white noise)."""
  rng = np.random.default_rng(seed)
  u = np.linspace(0, np.pi, size)
  out = []
  for _ in range(n):
    a, b, phase = rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 3), rng.uniform(0, 6, 3)
    img = 0.5 + 0.4 * np.sin(a * u[:, None, None] + b * u[None, :, None] + phase)
    out.append(img)
  return np.asarray(out, np.float32)


def tiny_episodes(n: int = 2, seed: int = 0):
  tasks = tiny_image_tasks()
  return stack_episodes([tasks.episode(i) for i in smooth_images(n, seed=seed)])


def one_line_error(match: str, fn, *args, **kwargs) -> str:
  """Asserts fn(*args, **kwargs) raises a one-line UserError matching `match`."""
  with pytest.raises(UserError, match=match) as info:
    fn(*args, **kwargs)
  assert '\n' not in str(info.value)
  return str(info.value)


def downward_rays(n: int, seed: int = 0) -> np.ndarray:
  """[n, 6] rays (origin, unit direction) looking down from 1.5 over [-1, 1]^2."""
  rng = np.random.default_rng(seed)
  origins = np.concatenate([rng.uniform(-1, 1, (n, 2)), np.full((n, 1), 1.5)], -1)
  dirs = np.concatenate([rng.normal(0, 0.4, (n, 2)), -np.ones((n, 1))], -1)
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  return np.concatenate([origins, dirs], -1).astype(np.float32)
