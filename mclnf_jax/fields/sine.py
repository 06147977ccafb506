"""Sine implementations selectable by name (the SIREN activation is the hot spot)."""
from typing import Callable

import jax
import jax.numpy as jnp

SINES: dict[str, Callable[[jax.Array], jax.Array]] = {'exact': jnp.sin}


def get_sine(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in SINES:
    raise ValueError(f'unknown sine {name!r}; choose one of {sorted(SINES)}')
  return SINES[name]
