"""Volume rendering against brute-force and analytic references; the NeRF MLP."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mclnf_jax.render as render   # the module (mclnf_jax.render is also an API name)
from mclnf_jax.fields import nerf

NEAR, FAR = 1.0, 3.0
BG = np.array([0.2, 0.4, 0.9], np.float32)
# Jitted once per field: eager op-by-op dispatch would dominate the test time.
_render = jax.jit(render.render_rays, static_argnums=0, static_argnames=(
    'near', 'far', 'num_samples', 'stratified', 'hierarchical_samples', 'last_delta'))


def _inv_softplus(y: float) -> float:
  return float(np.log(np.expm1(y)))


def _constant_field(sigma: float, color):
  """apply_fn with the same colour and density everywhere; params unused."""
  logit = np.log(np.asarray(color) / (1 - np.asarray(color)))
  raw = jnp.asarray(np.append(logit, _inv_softplus(sigma)), jnp.float32)   # [4]
  return lambda params, x: jnp.broadcast_to(raw, (x.shape[0], 4))


def _rays(n: int, seed: int = 0, length: float = 1.0):
  rng = np.random.default_rng(seed)
  d = rng.normal(size=(n, 3))
  d = length * d / np.linalg.norm(d, axis=-1, keepdims=True)
  return jnp.asarray(rng.normal(size=(n, 3)), jnp.float32), jnp.asarray(d, jnp.float32)


def _numpy_reference(rgb, sigma, t, d_norm, near, far, bg):
  """Per-ray loop of NeRF eq. 3 over intervals tiling [near, far]."""
  out_rgb, out_depth, out_acc = [], [], []
  for r in range(t.shape[0]):
    edges = np.concatenate([[near], 0.5 * (t[r, 1:] + t[r, :-1]), [far]])
    trans, c, depth, acc = 1.0, np.zeros(3), 0.0, 0.0
    for i in range(t.shape[1]):
      alpha = 1 - np.exp(-sigma[r, i] * (edges[i + 1] - edges[i]) * d_norm[r])
      w = trans * alpha
      c, depth, acc = c + w * rgb[r, i], depth + w * t[r, i], acc + w
      trans *= 1 - alpha
    out_rgb.append(c + (1 - acc) * bg)
    out_depth.append(depth + (1 - acc) * far)
    out_acc.append(acc)
  return np.array(out_rgb), np.array(out_depth), np.array(out_acc)


@pytest.mark.parametrize('length', [1.0, 2.0])
def test_constant_medium_matches_analytic_transmittance(length):
  sigma, color, n = 0.7, np.array([0.9, 0.5, 0.1]), 512
  o, d = _rays(4, length=length)
  out = _render(_constant_field(sigma, color), None, o, d, None, near=NEAR,
                           far=FAR, num_samples=n, background=BG, stratified=False)
  opt_len = sigma * (FAR - NEAR) * length           # optical depth of the whole ray
  acc = 1 - np.exp(-opt_len)
  np.testing.assert_allclose(out['acc'], acc, atol=5e-5)   # float32 sums
  np.testing.assert_allclose(out['rgb'], np.broadcast_to(color * acc + BG * (1 - acc),
                                                         (4, 3)), atol=1e-5)
  # E[t] with the transmitted rest at far: near + (1 - exp(-s L)) / s, s per unit t.
  s = sigma * length
  np.testing.assert_allclose(out['depth'], NEAR + (1 - np.exp(-opt_len)) / s, atol=1e-4)


def test_transmittance_is_exp_of_optical_depth():
  sigma = 1.3
  t = render.sample_along_rays(None, 1, 16, NEAR, FAR, stratified=False)   # [1, 16]
  delta = render.interval_lengths(t, NEAR, FAR)
  w = render.compositing_weights(jnp.full_like(t, sigma), delta)
  start = NEAR + np.arange(16) * (FAR - NEAR) / 16
  expected = np.exp(-sigma * (start - NEAR)) * (1 - np.exp(-sigma * (FAR - NEAR) / 16))
  np.testing.assert_allclose(w[0], expected, rtol=1e-5)


@pytest.mark.slow
def test_matches_brute_force_reference_on_a_varying_field():
  key = jax.random.key(1)
  o, d = _rays(6, seed=2, length=1.5)

  def apply_fn(params, x):   # smooth colour and density varying in space and view
    return jnp.concatenate([jnp.sin(x[:, :3] * params + x[:, 3:]),
                            jnp.cos(x[:, :1] * 2.0) * 2.0], -1)

  params = jnp.array([1.0, 2.0, 3.0])
  out = _render(apply_fn, params, o, d, key, near=NEAR, far=FAR,
                           num_samples=32, background=BG, stratified=True)
  t = render.sample_along_rays(jax.random.split(key)[0], 6, 32, NEAR, FAR, True)
  pts = o[:, None] + t[..., None] * d[:, None]
  unit = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
  inp = jnp.concatenate([pts, jnp.broadcast_to(unit[:, None], pts.shape)], -1)
  raw = np.asarray(apply_fn(params, inp.reshape(-1, 6))).reshape(6, 32, 4)
  rgb = 1 / (1 + np.exp(-raw[..., :3]))
  sigma = np.log1p(np.exp(raw[..., 3]))
  ref = _numpy_reference(rgb, sigma, np.asarray(t), np.linalg.norm(d, axis=-1), NEAR,
                         FAR, BG)
  for got, want in zip((out['rgb'], out['depth'], out['acc']), ref):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _slab_field(z_lo: float, z_hi: float):
  def apply_fn(params, x):
    inside = (x[:, 2] >= z_lo) & (x[:, 2] <= z_hi)
    density = jnp.where(inside, _inv_softplus(500.0), -40.0)
    return jnp.concatenate([jnp.zeros_like(x[:, :3]), density[:, None]], -1)
  return apply_fn


def test_slab_depth_and_hierarchical_sampling():
  # Rays straight down from z = 2 (some slanted); the slab's top face is at z = 0.5.
  o = jnp.array([[0.0, 0.0, 2.0], [1.0, -1.0, 2.0], [0.3, 0.2, 2.0]])
  d = jnp.array([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8], [0.0, -0.6, -0.8]])
  true_depth = 1.5 / -d[:, 2]                          # distance to z = 0.5
  kw = dict(near=0.0, far=4.0, num_samples=64, background=BG, stratified=False)
  coarse = _render(_slab_field(0.2, 0.5), None, o, d, None, **kw)
  np.testing.assert_allclose(coarse['acc'], 1.0, atol=1e-4)
  np.testing.assert_allclose(coarse['depth'], true_depth, atol=4.0 / 64)
  fine = _render(_slab_field(0.2, 0.5), None, o, d, jax.random.key(0),
                            hierarchical_samples=64, **{**kw, 'stratified': True})
  np.testing.assert_allclose(fine['depth'], true_depth, atol=0.01)
  assert np.all(np.abs(fine['depth'] - true_depth) <=
                np.abs(coarse['depth'] - true_depth) + 1e-6)
  assert set(fine) >= {'rgb_coarse', 'depth_coarse', 'acc_coarse'}


def test_background_shows_through_empty_space():
  o, d = _rays(5)
  empty = lambda params, x: jnp.concatenate(
      [jnp.ones_like(x[:, :3]), jnp.full_like(x[:, :1], -40.0)], -1)
  out = _render(empty, None, o, d, jax.random.key(3), near=NEAR, far=FAR,
                           num_samples=16, background=BG, stratified=True,
                           hierarchical_samples=8)
  np.testing.assert_allclose(out['rgb'], np.broadcast_to(BG, (5, 3)), atol=1e-6)
  np.testing.assert_allclose(out['acc'], 0.0, atol=1e-6)
  np.testing.assert_allclose(out['depth'], FAR, atol=1e-4)


def test_nerf_last_delta_makes_any_density_opaque():
  o, d = _rays(3)
  out = _render(_constant_field(1e-3, [0.5] * 3), None, o, d, None,
                           near=NEAR, far=FAR, num_samples=8, background=BG,
                           stratified=False, last_delta=1e10)
  np.testing.assert_allclose(out['acc'], 1.0, atol=1e-6)


@functools.lru_cache(maxsize=None)
def _tiny_mlp():
  module = nerf.NeRFMLP(depth=3, width=16, pos_freqs=2, dir_freqs=1)
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 6)))['params']
  apply_fn = lambda p, x: module.apply({'params': p}, x)
  return apply_fn, params


@pytest.mark.slow
def test_gradients_finite_with_mlp_field():
  apply_fn, params = _tiny_mlp()
  o, d = _rays(8)
  target = jnp.full((8, 3), 0.5)

  def loss(p, key):
    out = render.render_rays(apply_fn, p, o, d, key, near=NEAR, far=FAR,
                             num_samples=8, background=BG, stratified=True,
                             hierarchical_samples=8)
    return jnp.mean((out['rgb'] - target) ** 2) + jnp.mean(out['depth'])

  grads = jax.jit(jax.grad(loss))(params, jax.random.key(0))
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


@pytest.mark.slow
def test_jit_and_vmap_over_parameter_sets():
  apply_fn, params = _tiny_mlp()
  o, d = _rays(8)
  fn = functools.partial(render.render_rays, apply_fn, near=NEAR, far=FAR,
                         num_samples=8, background=BG, stratified=False)
  single = jax.jit(lambda p: fn(p, o, d, None))
  stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
  batched = jax.jit(jax.vmap(lambda p: fn(p, o, d, None)))(stacked)   # experts
  assert batched['rgb'].shape == (2, 8, 3) and batched['depth'].shape == (2, 8)
  np.testing.assert_allclose(batched['rgb'][0], single(params)['rgb'], atol=1e-5)
  second = single(jax.tree_util.tree_map(lambda a: 2 * a, params))
  np.testing.assert_allclose(batched['rgb'][1], second['rgb'], atol=1e-5)


@pytest.mark.parametrize('cfg', [dict(depth=3, width=16, pos_freqs=2, dir_freqs=1),
                                 dict(depth=1, width=8, pos_freqs=0, dir_freqs=0),
                                 dict(depth=4, width=12, skip=False),
                                 dict(depth=10, width=64)])
def test_nerf_param_count_matches_module(cfg):
  module = nerf.NeRFMLP(**cfg)
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 6)))
  assert sum(x.size for x in jax.tree_util.tree_leaves(shapes)) == (
      nerf.nerf_param_count(**cfg))
  out = jax.eval_shape(module.apply, shapes, jnp.zeros((5, 6)))
  assert out.shape == (5, 4)


def test_param_counts_of_the_paper_and_of_nerf():
  assert nerf.nerf_param_count(8, 256) == 595_844        # NeRF's own MLP
  assert nerf.nerf_param_count(10, 512) == 2_831_108
  assert nerf.nerf_param_count(10, 256) == 727_428
  assert nerf.table7_formula(512) == 2_628_099           # paper Table 7
  assert nerf.table7_formula(256) == 659_459


def test_positional_encoding_layout():
  x = jnp.array([[0.5, -1.0, 2.0]])
  enc = nerf.positional_encoding(x, 2)
  assert enc.shape == (1, 15)
  np.testing.assert_allclose(enc[0, :3], x[0])
  np.testing.assert_allclose(enc[0, 3:9], np.sin(np.concatenate([x[0], 2 * x[0]])),
                             rtol=1e-6)


@pytest.mark.slow
def test_per_ray_jitter_seeds_stratify_each_ray_on_its_own():
  """Seeded samples stay in their bins, differ between seeds, and a ray renders the same
  alone or in any batch (its offsets depend only on its own seed)."""
  seeds = jnp.asarray(np.random.default_rng(0).uniform(size=8), jnp.float32)
  t = render.sample_along_rays(None, 8, 16, NEAR, FAR, True, jitter=seeds)
  edges = np.linspace(NEAR, FAR, 17)
  assert (np.asarray(t) >= edges[:-1]).all() and (np.asarray(t) < edges[1:]).all()
  assert len(np.unique(np.asarray(t).round(6), axis=0)) == 8
  mid = render.sample_along_rays(None, 8, 16, NEAR, FAR, False)
  assert not np.allclose(t, mid)
  np.testing.assert_array_equal(t, render.sample_along_rays(None, 8, 16, NEAR, FAR, True,
                                                            jitter=seeds))
  u = np.asarray(render.hash_uniform(jnp.arange(4096, dtype=jnp.uint32), 4))
  assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02

  def apply_fn(params, x):
    return jnp.concatenate([jnp.sin(x[:, :3] * params + x[:, 3:]),
                            jnp.cos(x[:, :1] * 2.0) * 2.0], -1)
  o, d = _rays(8, seed=3)
  params = jnp.array([1.0, 2.0, 3.0])
  kw = dict(near=NEAR, far=FAR, num_samples=16, background=BG, stratified=True,
            hierarchical_samples=8)
  rays = jax.jit(lambda o, d, jitter: render.render_rays(apply_fn, params, o, d, None,
                                                         jitter=jitter, **kw))
  batch = rays(o, d, seeds)
  alone = rays(o[5:6], d[5:6], seeds[5:6])
  np.testing.assert_allclose(alone['rgb'][0], batch['rgb'][5], rtol=1e-5, atol=1e-6)
  other = rays(o, d, seeds + 0.25)
  assert not np.allclose(other['rgb'], batch['rgb'])
