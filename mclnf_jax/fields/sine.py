"""Sine implementations selectable by name (the SIREN activation is the hot spot).

'exact' is `jnp.sin`. 'fast' reduces x to r in [-pi/2, pi/2] with x = k pi + r
(Cody-Waite: pi split in three parts, the first two short enough that k * part is exact
for |k| < 2^16) and evaluates odd / even minimax polynomials of degree 9 / 8 in r:
sin(x) = (-1)^k sin(r), cos(x) = (-1)^k cos(r). Its derivative is the matching fast
cosine (and the cosine's is minus the fast sine), so gradients of any order stay cheap.

Accuracy of 'fast' against float64 sin/cos of the same float32 input: absolute error
<= 1e-6 for |x| <= FAST_SINE_RANGE (measured ~3e-7; tests/test_sine.py checks it).
SIREN pre-activations times w0 stay far inside (|w0 z| is tens at init). Any finite
input gives a finite value in [-1, 1] (the reduced argument is clamped), only less
accurate beyond the range; inf and nan give nan, as jnp.sin does.
"""
from typing import Callable

import jax
import jax.numpy as jnp

FAST_SINE_RANGE = 1e5   # |x| up to which 'fast' is accurate to 1e-6 absolute

_INV_PI = 0.3183098861837907
_PI_1 = 3.140625                  # 8 significant bits: k * _PI_1 exact for |k| < 2^16
_PI_2 = 0.00096893310546875       # 7 significant bits
_PI_3 = -1.2795156863e-06         # pi - _PI_1 - _PI_2, to float32
_HALF_PI = 1.5707963267948966
# Minimax on [-pi/2, pi/2] with the leading term fixed: sin r = r + r^3 S(r^2),
# cos r = 1 + r^2 C(r^2); max error 1.7e-8 and 7.3e-8 before float32 rounding.
_SIN = (-0.16666656732559204, 0.008333017118275166, -0.00019806614727713168,
        2.6000543584814295e-06)
_COS = (-0.4999993145465851, 0.041663989424705505, -0.001385592739097774,
        2.3194383174995892e-05)


def _horner(coeffs, u):
  acc = coeffs[-1]
  for c in reversed(coeffs[:-1]):
    acc = acc * u + c
  return acc


def _reduce(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(r, odd) with x = k pi + r, r in [-pi/2, pi/2], odd = k is odd."""
  k = jnp.round(x * _INV_PI)
  r = ((x - k * _PI_1) - k * _PI_2) - k * _PI_3
  half = k * 0.5
  return jnp.clip(r, -_HALF_PI, _HALF_PI), jnp.floor(half) != half


def _sin_reduced(r, odd):
  r = jnp.where(odd, -r, r)                     # (-1)^k sin r = sin((-1)^k r)
  r2 = r * r
  return r + r * r2 * _horner(_SIN, r2)


def _cos_reduced(r, odd):
  r2 = r * r
  c = 1.0 + r2 * _horner(_COS, r2)
  return jnp.where(odd, -c, c)


@jax.custom_jvp
def fast_sin(x: jax.Array) -> jax.Array:
  """sin(x) to 1e-6 absolute for |x| <= FAST_SINE_RANGE; d/dx is fast_cos."""
  return _sin_reduced(*_reduce(x))


@jax.custom_jvp
def fast_cos(x: jax.Array) -> jax.Array:
  """cos(x) to 1e-6 absolute for |x| <= FAST_SINE_RANGE; d/dx is -fast_sin."""
  return _cos_reduced(*_reduce(x))


@fast_sin.defjvp
def _fast_sin_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  r, odd = _reduce(x)                           # one reduction for both polynomials
  return _sin_reduced(r, odd), _cos_reduced(r, odd) * t


@fast_cos.defjvp
def _fast_cos_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  r, odd = _reduce(x)
  return _cos_reduced(r, odd), -_sin_reduced(r, odd) * t


SINES: dict[str, Callable[[jax.Array], jax.Array]] = {'exact': jnp.sin, 'fast': fast_sin}


def get_sine(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in SINES:
    raise ValueError(f'unknown sine {name!r}; choose one of {sorted(SINES)}')
  return SINES[name]
