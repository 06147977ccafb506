"""Sine implementations selectable by name (the SIREN activation is the hot spot).

'exact' is `jnp.sin`. 'fast' reduces x to r in [-pi/2, pi/2] with x = k pi + r
(Cody-Waite: pi split in three parts, the first two short enough that k * part is exact
for |k| < 2^16) and evaluates odd / even minimax polynomials of degree 9 / 8 in r:
sin(x) = (-1)^k sin(r), cos(x) = (-1)^k cos(r). Its derivative is the matching fast
cosine (and the cosine's is minus the fast sine), so gradients of any order stay cheap.

Accuracy of 'fast' against float64 sin/cos of the same float32 input: absolute error
<= 1e-6 for |x| <= FAST_SINE_RANGE (measured max 1.3e-7 for sin, 2.2e-7 for cos, up to
|x| = 2e5; tests/test_sine.py checks values and first and second derivatives). SIREN
pre-activations times w0 stay far inside (|w0 z| is tens at init). Any finite input
gives a finite value within 1e-6 of [-1, 1] (the reduced argument is clamped), only less
accurate beyond the range; inf and nan give nan, as jnp.sin does. 16-bit inputs are
reduced in float32.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from mclnf_jax.errors import UserError

FAST_SINE_RANGE = 1e5   # |x| up to which 'fast' is accurate to 1e-6 absolute

_INV_PI = 0.3183098861837907
_PI_1 = 3.140625                  # 8 significant bits: k * _PI_1 exact for |k| < 2^16
_PI_2 = 0.00096893310546875       # 7 significant bits
_PI_3 = -1.2795156863e-06         # pi - _PI_1 - _PI_2, to float32
# k = round(x / pi) is computed in float32, so near half-integers it may be off by one
# and r may leave [-pi/2, pi/2] by up to ~|x| 2^-23 pi: the polynomials hold on
# |r| <= pi/2 + 0.05 (enough for |x| <= 4e5), where r is also clamped.
_R_MAX = 1.5707963267948966 + 0.05
# Minimax on [-_R_MAX, _R_MAX] with the leading term fixed: sin r = r + r^3 S(r^2),
# cos r = 1 + r^2 C(r^2); max errors 3.3e-8 and 7.9e-8 with float32 coefficients.
_SIN = (-0.16666653752326965, 0.008332952857017517, -0.00019802080350928009,
        2.5902752440742915e-06)
_COS = (-0.49999913573265076, 0.04166344553232193, -0.0013851625844836235,
        2.3093813069863245e-05)


def _horner(coeffs, u):
  acc = coeffs[-1]
  for c in reversed(coeffs[:-1]):
    acc = acc * u + c
  return acc


def _reduce(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(r, odd) with x = k pi + r, |r| <= _R_MAX, odd = k is odd."""
  k = jnp.round(x * _INV_PI)
  r = ((x - k * _PI_1) - k * _PI_2) - k * _PI_3
  half = k * 0.5
  return jnp.clip(r, -_R_MAX, _R_MAX), jnp.floor(half) != half


def _sin_reduced(r, odd):
  r = jnp.where(odd, -r, r)                     # (-1)^k sin r = sin((-1)^k r)
  r2 = r * r
  return r + r * r2 * _horner(_SIN, r2)


def _cos_reduced(r, odd):
  r2 = r * r
  c = 1.0 + r2 * _horner(_COS, r2)
  return jnp.where(odd, -c, c)


def _in_float32(fn, x):
  """fn at float32 or wider (16-bit floats cannot hold the reduction), x's dtype out."""
  x = jnp.asarray(x)
  if jnp.finfo(x.dtype).bits >= 32:
    return fn(x)
  return fn(x.astype(jnp.float32)).astype(x.dtype)


@jax.custom_jvp
def fast_sin(x: jax.Array) -> jax.Array:
  """sin(x) to 1e-6 absolute for |x| <= FAST_SINE_RANGE; d/dx is fast_cos."""
  return _in_float32(lambda v: _sin_reduced(*_reduce(v)), x)


@jax.custom_jvp
def fast_cos(x: jax.Array) -> jax.Array:
  """cos(x) to 1e-6 absolute for |x| <= FAST_SINE_RANGE; d/dx is -fast_sin."""
  return _in_float32(lambda v: _cos_reduced(*_reduce(v)), x)


# The rules call the custom functions (not the polynomials), so derivatives of every
# order are fast sines and cosines. In a SIREN step the forward fusion computes the sine
# and the backward fusion the cosine from the stored pre-activation (no extra array).
@fast_sin.defjvp
def _fast_sin_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return fast_sin(x), fast_cos(x) * t


@fast_cos.defjvp
def _fast_cos_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return fast_cos(x), -fast_sin(x) * t


SINES: dict[str, Callable[[jax.Array], jax.Array]] = {'exact': jnp.sin, 'fast': fast_sin}


def get_sine(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in SINES:
    raise UserError(f'unknown sine {name!r}: use one of {", ".join(sorted(SINES))}')
  return SINES[name]
