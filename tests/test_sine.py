import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mclnf_jax.fields import Field
from mclnf_jax.fields.sine import FAST_SINE_RANGE, SINES, fast_cos, fast_sin, get_sine
from mclnf_jax.fields.siren import Siren

TOL = 1e-6   # absolute, against float64 on the same float32 inputs


def _inputs(limit: float, n: int = 400_000, seed: int = 0) -> np.ndarray:
  """Uniform points plus the hard ones: near multiples of pi/2, where k may flip."""
  rng = np.random.default_rng(seed)
  k = rng.integers(-int(limit / np.pi), int(limit / np.pi), n // 4)
  near = (k + 0.5) * np.pi + rng.uniform(-1e-3, 1e-3, k.size)
  x = np.concatenate([rng.uniform(-limit, limit, n), near, k * np.pi])
  return x[np.abs(x) <= limit].astype(np.float32)


def _error(fn, ref, x: np.ndarray) -> float:
  return float(np.max(np.abs(np.asarray(jax.jit(fn)(x), np.float64) - ref(x.astype(np.float64)))))


@pytest.mark.parametrize('limit', [4.0, 300.0, FAST_SINE_RANGE])
def test_fast_sin_and_cos_are_accurate_over_the_guaranteed_range(limit):
  x = _inputs(limit)
  assert _error(fast_sin, np.sin, x) < TOL
  assert _error(fast_cos, np.cos, x) < TOL


def test_derivatives_are_the_fast_cosine_and_minus_sine():
  x = _inputs(300.0, n=100_000)
  d1 = jax.vmap(jax.grad(fast_sin))
  d2 = jax.vmap(jax.grad(jax.grad(fast_sin)))
  assert _error(d1, np.cos, x) < TOL
  assert _error(d2, lambda v: -np.sin(v), x) < TOL
  assert _error(jax.vmap(jax.grad(fast_cos)), lambda v: -np.sin(v), x) < TOL


def test_any_finite_input_gives_a_bounded_value_and_non_finite_gives_nan():
  big = np.array([1e6, -3e7, 1e10, 3.4e38, -3.4e38, 1e-38, 0.0], np.float32)
  y = np.asarray(fast_sin(big))
  assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0 + TOL)
  assert np.all(np.isnan(np.asarray(fast_sin(np.array([np.inf, -np.inf, np.nan], np.float32)))))


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_half_precision_is_reduced_in_float32(dtype):
  x = jnp.linspace(-100.0, 100.0, 1001).astype(dtype)
  y = fast_sin(x)
  assert y.dtype == dtype
  ref = np.sin(np.asarray(x.astype(jnp.float32), np.float64))
  assert np.max(np.abs(np.asarray(y, np.float64) - ref)) < 1e-2


@pytest.mark.slow
def test_siren_with_fast_sine_matches_exact_and_its_gradients():
  x = jax.random.uniform(jax.random.key(0), (64, 2), minval=-1, maxval=1)
  fields = {name: Field(Siren(width=32, depth=4, out_dim=3, sine=name), in_dim=2)
            for name in ('exact', 'fast')}
  params = fields['exact'].init(jax.random.key(1))
  loss = lambda f: lambda p: jnp.mean(f.apply(p, x) ** 2)
  out = {n: f.apply(params, x) for n, f in fields.items()}
  grads = {n: jax.grad(loss(f))(params) for n, f in fields.items()}
  np.testing.assert_allclose(out['fast'], out['exact'], atol=1e-5)
  for g_fast, g_exact in zip(jax.tree_util.tree_leaves(grads['fast']),
                             jax.tree_util.tree_leaves(grads['exact'])):
    np.testing.assert_allclose(g_fast, g_exact, rtol=1e-3, atol=1e-5)


def test_registry():
  assert get_sine('fast') is fast_sin and get_sine('exact') is jnp.sin
  assert set(SINES) >= {'exact', 'fast'}
  with pytest.raises(ValueError, match='unknown sine'):
    get_sine('nope')
