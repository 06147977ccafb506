"""The FIM loss's fast path for rendered predictions (`types.GroupedPrediction`): per-ray
scores from the NeRF MLP's layer taps give the same q, weights, loss, gradient, running
Fisher and second-order meta-gradient as the vmap(grad) reference path; the identity
predictor keeps the dense path."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax import fisher, learners, losses
from mclnf_jax.fields import Field
from mclnf_jax.fields.nerf import NeRFMLP
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.scene import SceneTasks
from mclnf_jax.types import Episode, GroupedPrediction
from tests import helpers

FIELD = Field(NeRFMLP(depth=3, width=8, pos_freqs=2, dir_freqs=1, skip=True), in_dim=6)
PARAMS = FIELD.init(jax.random.key(0))
RAYS = 6
# (hierarchical samples, columns, chunk): midpoints; stratified jitter (the 7th column);
# coarse then fine samples (two field calls); rays > chunk (the prediction renders in
# chunks, the tapped path whole).
CASES = [(0, 6, 64), (0, 7, 64), (3, 7, 64), (0, 7, 4)]


def scene(hierarchical=0, chunk=64, **kw) -> SceneTasks:
  values = dict(grid=(2, 2), bounds=(-1.0, 1.0, -1.0, 1.0), near=0.1, far=3.0,
                image_shape=(4, 4), query_views=1, rays_per_task=RAYS, num_samples=4,
                hierarchical_samples=hierarchical, chunk=chunk)
  return SceneTasks(**{**values, **kw})


def rays(n: int, seed: int = 0, columns: int = 7) -> np.ndarray:
  """n rays looking down on the cells from above, a jitter seed as 7th column."""
  rng = np.random.default_rng(seed)
  origin = np.concatenate([rng.uniform(-1, 1, (n, 2)), np.full((n, 1), 1.5)], -1)
  direction = np.concatenate([rng.normal(0, 0.3, (n, 2)), -np.ones((n, 1))], -1)
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  return np.concatenate([origin, direction, rng.uniform(0, 1, (n, 1))],
                        -1)[:, :columns].astype(np.float32)


def targets(n: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed + 100).uniform(0, 1, (n, 3)).astype(np.float32)


def reference(prediction):
  """The prediction behind a plain lambda: no declaration, the vmap(grad) path."""
  return lambda p, x: prediction(p, x)


def leaves_close(a, b, **tol):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), **tol)


def fim_value_and_grad(apply_fn, x, y, lam=2.0):
  """((loss, (w,)), gradient) of the diag FIM loss at PARAMS."""
  def loss(p):
    out = losses.fim_weighted_mse(apply_fn, p, x, y, lam=lam, return_weights=True)
    return out[0], out[1:]
  return jax.jit(jax.value_and_grad(loss, has_aux=True))(PARAMS)


def running_step(apply_fn):
  """(x, y, running) -> ((loss, (w, running)), gradient), jitted once per path."""
  def loss(p, x, y, running):
    out = losses.fim_weighted_mse(apply_fn, p, x, y, lam=2.0, return_weights=True,
                                  running=running, decay=0.9)
    return out[0], out[1:]
  grad = jax.value_and_grad(loss, has_aux=True)
  return jax.jit(lambda x, y, running: grad(PARAMS, x, y, running))


@pytest.mark.parametrize('hierarchical,columns,chunk', CASES)
def test_fast_path_equals_the_reference(hierarchical, columns, chunk):
  """q, weights, loss and gradient from per-ray layer taps equal vmap(grad)'s."""
  prediction = scene(hierarchical, chunk).predictor(FIELD.apply)
  assert isinstance(prediction, GroupedPrediction)
  assert fisher.uses_taps(prediction, 'diag')
  assert not fisher.uses_taps(reference(prediction), 'diag')
  x, y = jnp.asarray(rays(RAYS, columns=columns)), jnp.asarray(targets(RAYS))
  taps = jax.jit(lambda p: fisher.grouped_taps(prediction, p, x, y)[1])(PARAMS)
  samples = 4 + (4 + hierarchical if hierarchical else 0)     # coarse, then all again
  assert taps.inputs[0].shape == (RAYS, samples, FIELD.module.pos_freqs * 6 + 3)
  q_fast = jax.jit(lambda t: fisher.quadratic_forms_grouped(t, 'diag', 1e-8))(taps)
  q_ref = jax.jit(lambda p: fisher.quadratic_forms_reference(
      fisher.per_sample_scores(reference(prediction), p, x, y), 'diag', 1e-8))(PARAMS)
  np.testing.assert_allclose(q_fast, q_ref, rtol=1e-4)
  assert float(q_ref.max() - q_ref.min()) > 1e-2 * float(q_ref.mean())    # rays differ
  (loss, (w,)), grads = fim_value_and_grad(prediction, x, y)
  (want, (want_w,)), want_grads = fim_value_and_grad(reference(prediction), x, y)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(w, want_w, rtol=1e-4)
  leaves_close(grads, want_grads, rtol=1e-4, atol=1e-8)
  mse_grads = jax.jit(jax.grad(lambda p: losses.mse(prediction, p, x, y)))(PARAMS)
  assert max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(grads), jax.tree.leaves(mse_grads))) > 1e-5   # weighted


@pytest.mark.parametrize('hierarchical', [0, 3])
def test_running_fisher_equals_the_reference(hierarchical):
  """Three batches with decay 0.9: each step's weights, loss and gradient and the
  running estimate (per layer on the fast path, one [P] vector on the reference path)
  agree."""
  prediction = scene(hierarchical).predictor(FIELD.apply)
  paths = {'fast': prediction, 'reference': reference(prediction)}
  running = {k: fisher.init_running(f, PARAMS, 'diag') for k, f in paths.items()}
  assert len(running['fast'].factors) == len(FIELD.module.dense_names)
  steps = {k: running_step(f) for k, f in paths.items()}
  for batch in range(3):
    x, y = jnp.asarray(rays(RAYS, seed=batch)), jnp.asarray(targets(RAYS, seed=batch))
    got = {k: steps[k](x, y, running[k]) for k in paths}
    (loss, (w, running['fast'])), grads = got['fast']
    (want, (want_w, running['reference'])), want_grads = got['reference']
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(w, want_w, rtol=1e-4)
    leaves_close(grads, want_grads, rtol=1e-4, atol=1e-8)
  per_layer = {n: {'kernel': k, 'bias': b} for n, (k, b)
               in zip(FIELD.module.dense_names, running['fast'].factors)}
  flat = jax.flatten_util.ravel_pytree(per_layer)[0]     # the reference's leaf order
  np.testing.assert_allclose(flat, running['reference'].factors[0][0], rtol=1e-4, atol=1e-12)
  assert int(running['fast'].count) == 3


def test_kfac_is_refused_for_rendered_predictions():
  prediction = scene().predictor(FIELD.apply)
  x, y = jnp.asarray(rays(RAYS)), jnp.asarray(targets(RAYS))
  helpers.one_line_error('fisher=kfac needs one field row per prediction',
                         losses.fim_weighted_mse, prediction, PARAMS, x, y, lam=1.0,
                         fisher='kfac')
  helpers.one_line_error('use fim.fisher=diag or exact', fisher.init_running, prediction,
                         PARAMS, 'kfac')


def test_exact_takes_the_reference_path():
  prediction = scene().predictor(FIELD.apply)
  assert not fisher.uses_taps(prediction, 'exact')
  x, y = jnp.asarray(rays(RAYS)), jnp.asarray(targets(RAYS))
  loss = lambda f: jax.jit(lambda p: losses.fim_weighted_mse(f, p, x, y, lam=1.0,
                                                              fisher='exact'))(PARAMS)
  np.testing.assert_array_equal(loss(prediction), loss(reference(prediction)))


def test_nerf_mlp_taps_give_per_sample_gradients():
  """The NeRF MLP as a plain field (identity prediction): its sown inputs and perturbed
  pre-activations, through the skip and view concatenations, give the dense path's
  weights and gradient equal to vmap(grad)'s."""
  module = FIELD.module
  assert list(PARAMS) == module.dense_names          # creation order (OML reads it)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(10, 6)), jnp.float32)
  y = jnp.asarray(np.random.default_rng(4).normal(size=(10, 4)), jnp.float32)
  assert fisher.tap_source(FIELD.apply) == (FIELD, False)
  (loss, (w,)), grads = fim_value_and_grad(FIELD.apply, x, y)
  (want, (want_w,)), want_grads = fim_value_and_grad(lambda p, x: FIELD.apply(p, x), x, y)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(w, want_w, rtol=1e-4)
  leaves_close(grads, want_grads, rtol=1e-4, atol=1e-8)


def test_identity_predictor_keeps_the_dense_path():
  """Images: the predictor is the field's apply itself, and the FIM loss is the dense
  path's computation, bit for bit."""
  tasks = helpers.tiny_image_tasks()
  from mclnf_jax.fields.siren import Siren
  field = Field(Siren(width=5, depth=3, out_dim=3, w0=3.0), in_dim=2)
  params = field.init(jax.random.key(0))
  apply_fn = tasks.predictor(field.apply)
  assert apply_fn == field.apply and fisher.tap_source(apply_fn) == (field, False)
  x = jax.random.uniform(jax.random.key(1), (12, 2), minval=-1, maxval=1)
  y = jax.random.uniform(jax.random.key(2), (12, 3))
  got, w = jax.jit(lambda p: losses.fim_weighted_mse(apply_fn, p, x, y, lam=2.0,
                                                     return_weights=True))(params)

  def by_hand(p):
    out, taps = fisher.dense_taps(field.apply, p, x, y)
    weights = losses._weights(fisher.quadratic_forms_taps(taps, 'diag', 1e-8), 2.0, True, 2.0)
    return jnp.mean(weights[:, None] * jnp.square(out - y)), weights
  want, want_w = jax.jit(by_hand)(params)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(w, want_w)


# ------------------------------------------------------------------ the learner


def scene_episode(tasks: SceneTasks, pool: int = 24, seed: int = 0) -> Episode:
  """A synthetic scene signal: each of the 4 cells' pools of rays looking down."""
  t = tasks.num_tasks
  x = rays(t * pool, seed, columns=6).reshape(t, pool, 6)
  y = targets(t * pool, seed).reshape(t, pool, 3)
  return jax.tree.map(jnp.asarray, Episode(x, y, x[0], y[0]))


def meta_gradient(tasks: SceneTasks, decay: float, fast: bool):
  config = helpers.tiny_config('modular_fim')
  config.field.update(kind='nerf', depth=3, pos_freqs=2, dir_freqs=1, skip=True)
  config.methods.modular_fim.update(fisher_decay=decay, inner_lr=0.1)
  spec = task_spec(tasks)
  if not fast:
    spec = spec._replace(predictor=lambda f: reference(tasks.predictor(f)))
  learner = learners.build(config, 'modular_fim', spec)
  meta_params = learner.init(jax.random.key(0))
  episode = scene_episode(tasks)
  return jax.jit(jax.value_and_grad(lambda m: learner.meta_loss(m, episode)[0]))(meta_params)


@pytest.mark.slow
@pytest.mark.parametrize('hierarchical,decay', [(0, 0.0), (2, 0.9)])
def test_second_order_meta_gradient_equals_the_reference(hierarchical, decay):
  """Ours (MIM) on a tiny scene (fresh stratified rays, 2 inner steps, second order):
  the meta-loss and meta-gradient through the fast path equal the reference path's."""
  tasks = scene(hierarchical, rays_per_task=4, query_rays_per_task=4)
  value, grads = meta_gradient(tasks, decay, fast=True)
  want, want_grads = meta_gradient(tasks, decay, fast=False)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  leaves_close(grads, want_grads, rtol=2e-4, atol=1e-7)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 1e-4


def test_row_products_vjp_is_the_einsums():
  """Per-row score products (their hand-written VJP keeps every product minor-axis):
  value, VJP and a second derivative equal autodiff of the plain einsum."""
  with jax.enable_x64(True):
    ka, kd, kg = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(ka, (5, 4, 3), jnp.float64)
    d = jax.random.normal(kd, (5, 4, 2), jnp.float64)
    g = jax.random.normal(kg, (5, 3, 2), jnp.float64)
    plain = lambda a, d: jnp.einsum('nki,nko->nio', a, d)
    fast = lambda a, d: fisher.grouped_scores(a, d)[0]
    np.testing.assert_allclose(fast(a, d), plain(a, d), rtol=1e-12)
    leaves_close(jax.vjp(fast, a, d)[1](g), jax.vjp(plain, a, d)[1](g), rtol=1e-12)
    second = lambda f: jax.grad(lambda a: jnp.sum(jnp.sin(jax.grad(
        lambda a: jnp.sum(jnp.sin(f(a, d) * g)))(a))))(a)
    np.testing.assert_allclose(second(fast), second(plain), rtol=1e-10)
