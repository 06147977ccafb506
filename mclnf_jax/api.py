"""A notebook's view of the package: load a meta-learned init, fit a new signal, render a
fitted scene, and move parameters in and out as plain `.npz` arrays.

    from mclnf_jax import api
    config = api.load_config(workdir)             # the config the workdir was trained with
    init = api.load_init(workdir, 'modular')      # its best meta-parameters
    fit = api.fit(image, config=config, init=init, steps=64)
    fit.recon, fit.metrics['psnr'], fit.curves['psnr']     # signal, last step, per step
    api.export_npz('experts.npz', fit.state)      # plain arrays, no package needed

Built only of what the experiment uses (`experiment.meta_params`, `make_modality`,
`task_spec`, `learners.build`, `evaluate.Evaluator`), so a fit here gives the numbers the
evaluation protocol gives for the same signal and step count.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mclnf_jax import checkpoints, evaluate, experiment, identity, learners
from mclnf_jax.configs import base, keys
from mclnf_jax.errors import UserError
from mclnf_jax.learners.base import Learner
from mclnf_jax.tasks import Modality, task_spec
from mclnf_jax.tasks.factory import make_modality

SEP = '/'     # between the keys of a flattened pytree path in an .npz


# ------------------------------------------------------------------- loading ---


def config_from(stored: dict) -> ml_collections.ConfigDict:
  """The base config with every key of `stored` (nested or flat 'a.b.c' keys) set.

  Stored configs are JSON, which has no tuples: a list stored where the base config holds
  a tuple becomes a tuple again, so the rebuilt config equals the one that was stored.
  Shared by `load_config` (a learner's stored identity) and `stream.Stream.load` (a
  saved stream's whole config).
  """
  config = base.base_config()
  for key, value in keys.flatten(stored).items():
    *sections, leaf = key.split('.')
    node = config
    for s in sections:
      node = node[s]
    if isinstance(node.get(leaf), tuple) and isinstance(value, list):
      value = tuple(value)
    node[leaf] = value
  return config


def load_config(workdir: str, learner: str = 'modular') -> ml_collections.ConfigDict:
  """The config a learner of `workdir` was meta-trained with, from its stored identity.

  The base config with every stored key set (`<workdir>/<learner>/config.json`: the keys
  its checkpoint depends on; others keep their defaults, which do not change the meta-
  parameters), `learners` set to `learner` and `meta.steps` to the saved step.
  """
  folder = os.path.join(workdir, learner)
  path = os.path.join(folder, 'config.json')
  if not os.path.exists(path):
    raise UserError(f'no {path}: {workdir} holds no meta-trained {learner} run '
                    '(pass config= for a learner that is not meta-learned)')
  stored = keys.flatten(identity.read_stored(path, folder))
  config = config_from({k: v for k, v in stored.items() if k != 'learner'})
  config.learners = learner
  step = checkpoints.latest_step(folder)
  if step:
    config.meta.steps = step
    config.meta.schedule_steps = stored.get('meta.schedule_steps', step)
  identity.check(config, workdir, learner)      # the rebuilt config is the stored one
  return config


def build(config: ml_collections.ConfigDict, learner: str = 'modular',
          modality: Optional[Modality] = None) -> tuple[Learner, Modality]:
  """The learner `learner` and the modality of `config` (as `experiment.run` builds them)."""
  modality = modality or make_modality(config)
  return learners.build(config, learner, task_spec(modality)), modality


def load_init(workdir: str, learner: str = 'modular',
              config: Optional[ml_collections.ConfigDict] = None) -> Any:
  """The best meta-parameters of `learner` in `workdir` (a pytree of arrays).

  config: the run's config; None reads it from the workdir (`load_config`). Learners
  that are not meta-learned (ol, cl, ...) give their random init (config needed).
  """
  config = load_config(workdir, learner) if config is None else config
  built, _ = build(config, learner)
  return experiment.meta_params(config, built, identity.check(config, workdir, learner))


# ----------------------------------------------------------------------- fit ---


@dataclasses.dataclass
class Fit:
  """A signal fitted by a learner.

  recon:   the reconstruction after the last step, in the signal's own shape (scenes:
           the query views, [V, H, W, 3]).
  metrics: metric -> value after the last step.
  curves:  metric -> values at each of `steps` (1, 2, 4, ..., k).
  state:   the adapted learner state (experts, optimiser state); `export_npz` it.
  """
  recon: np.ndarray
  metrics: dict[str, float]
  curves: dict[str, np.ndarray]
  steps: list[int]
  state: Any
  learner: Learner
  modality: Modality

  def predict(self, x: Any) -> np.ndarray:
    """The fitted field's prediction at inputs x [N, in_dim] (scenes: rays [N, 6])."""
    return np.asarray(jax.jit(self.learner.predict)(self.state, jnp.asarray(x)))


def fit(signal: Any, *, config: ml_collections.ConfigDict, learner: str = 'modular',
        steps: Optional[int] = None, init: Any = None,
        modality: Optional[Modality] = None) -> Fit:
  """Fits one signal task after task, k = `steps` steps per task (the test-time protocol).

  signal: what the config's modality takes: an image [H, W, 3], a video [F, H, W, 3],
    audio [T, 1] (or [T]), in [0, 1] at the config's sizes; a scene: a
    `data.scene.SceneSignal`. steps: default config.eval.max_steps. init: the learner's
    meta-parameters (`load_init`); None: its random init (config.seed).
  """
  built, modality = build(config, learner, modality)
  if init is None:
    init = built.init(jax.random.key(config.seed))
  if isinstance(signal, (np.ndarray, jax.Array)) or hasattr(signal, '__array__'):
    signal = np.asarray(signal, np.float32)
    shape = getattr(modality, 'shape', None)
    if shape is not None and signal.shape == tuple(shape):
      signal = signal[..., None]
  k = int(steps or config.eval.max_steps)
  if k < 1:
    raise UserError(f'fit: steps={k}; give at least 1 step per task')
  episodes = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], modality.episode(signal))
  evaluator = evaluate.Evaluator(built, modality)
  counts = evaluate.eval_steps(k)
  values, preds, state, _ = evaluator.curves(init, episodes, counts, keep=1, log=None)
  curves = {m: np.asarray(v[0], np.float64) for m, v in values.items()}
  return Fit(recon=np.asarray(preds[0, -1]), metrics={m: float(v[-1]) for m, v in
                                                      curves.items()},
             curves=curves, steps=counts,
             state=jax.tree_util.tree_map(lambda x: x[0], state), learner=built,
             modality=modality)


# -------------------------------------------------------------------- scenes ---


@dataclasses.dataclass(frozen=True)
class Camera:
  """Pinhole cameras: c2w [V, 4, 4] (or one [4, 4]) camera-to-world, OpenGL axes (as in
  `data.scene.Scene`); focal (fx, fy) and principal point (cx, cy) in pixels (default:
  the image centre)."""
  c2w: np.ndarray
  height: int
  width: int
  focal: tuple[float, float]
  principal: Optional[tuple[float, float]] = None


def render(scene: Fit, camera: Any, chunk: int = 4096) -> np.ndarray:
  """RGB [V, H, W, 3] of a fitted scene (`fit` of a SceneSignal) seen from `camera`: a
  `Camera`, or a `data.scene.Scene` (its views' poses and intrinsics)."""
  from mclnf_jax.data.scene import camera_rays  # pylint: disable=g-import-not-at-top
  c2w = np.asarray(camera.c2w, np.float32)
  c2w = c2w[None] if c2w.ndim == 2 else c2w
  if c2w.shape[-2] == 3:                          # [V, 3, 4]: add the last row
    c2w = np.concatenate([c2w, np.broadcast_to(np.eye(4, dtype=np.float32)[3:],
                                               (len(c2w), 1, 4))], axis=1)
  h, w = int(camera.height), int(camera.width)
  principal = getattr(camera, 'principal', None) or (w / 2, h / 2)
  origins, dirs = camera_rays(c2w, h, w, *camera.focal, *principal)
  rays = np.concatenate([origins, dirs], -1).reshape(-1, 6)
  predict = jax.jit(scene.learner.predict)
  rgb = [np.asarray(predict(scene.state, jnp.asarray(rays[i:i + chunk])))
         for i in range(0, len(rays), chunk)]
  return np.concatenate(rgb).reshape(len(c2w), h, w, -1)


# ----------------------------------------------------------------------- npz ---


def flatten(params: Any) -> dict[str, np.ndarray]:
  """{'a/b/0': array} of a pytree of arrays (dict keys, sequence indices, attributes)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    parts = []
    for p in path:
      if isinstance(p, jax.tree_util.DictKey):
        parts.append(str(p.key))
      elif isinstance(p, jax.tree_util.SequenceKey):
        parts.append(str(p.idx))
      elif isinstance(p, jax.tree_util.GetAttrKey):
        parts.append(p.name)
      else:
        parts.append(str(getattr(p, 'key', p)))
    key = SEP.join(parts)
    if key in out:
      raise UserError(f'export_npz: two leaves flatten to {key!r}')
    out[key] = np.asarray(jax.device_get(leaf))
  return out


def export_npz(path: str, params: Any) -> None:
  """Writes a pytree of arrays (meta-parameters, an adapted `Fit.state`) as an `.npz` of
  its leaves keyed by their flattened paths ('experts/Dense_0/kernel'): readable with
  `numpy.load(path)` alone."""
  from mclnf_jax import files  # pylint: disable=g-import-not-at-top
  arrays = flatten(params)
  if not arrays:
    raise UserError('export_npz: no arrays in the given parameters')
  files.write_npz(path, **arrays)


def load_npz(path: str, like: Any = None) -> Any:
  """The arrays of an `export_npz` file: nested dicts, or the structure of `like` (e.g.
  `load_init(...)`, for a learner's functions) when given."""
  with np.load(path) as npz:
    arrays = {k: npz[k] for k in npz.files}
  if like is None:
    return keys.nest(arrays, SEP)    # list-like levels stay dicts with '0', '1' keys
  expected = flatten(like)
  if set(expected) != set(arrays):
    missing = sorted(set(expected) ^ set(arrays))
    raise UserError(f'load_npz: {path} does not match the given structure (e.g. {missing[0]!r})')
  leaves = [arrays[k] for k in expected]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)
