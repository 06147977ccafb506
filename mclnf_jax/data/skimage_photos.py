"""The natural photos inside the scikit-image wheel (no download), as float RGB.

One loader for every embedded dataset that films or crops them (embedded images and
embedded video): `photo(name)` is float32 [H, W, 3] in [0, 1], grey repeated to three
channels, RGBA composited over white, booleans as 0 / 1. Stereo pairs are named
`stereo_motorcycle_left` / `_right` (`stereo_motorcycle` is the left view).
"""

from __future__ import annotations

import functools

import numpy as np
import skimage.data

_STEREO = {'stereo_motorcycle': 0, 'stereo_motorcycle_left': 0,
           'stereo_motorcycle_right': 1}


def to_unit_rgb(image: np.ndarray) -> np.ndarray:
  """A bool / uint8 / float, grey / RGB / RGBA array as float32 [H, W, 3] in [0, 1]."""
  scale = 255.0 if image.dtype == np.uint8 else 1.0
  image = np.asarray(image, np.float32) / np.float32(scale)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.shape[-1] == 4:  # Over white: c * a + (1 - a).
    alpha = image[..., 3:]
    image = image[..., :3] * alpha + (1.0 - alpha)
  return np.ascontiguousarray(image)


@functools.cache
def photo(name: str) -> np.ndarray:
  """The scikit-image picture `name` (a `skimage.data` function) as float32 RGB."""
  if name in _STEREO:
    return to_unit_rgb(skimage.data.stereo_motorcycle()[_STEREO[name]])
  return to_unit_rgb(getattr(skimage.data, name)())


def to_uint8(image: np.ndarray) -> np.ndarray:
  """float [..., 3] in [0, 1] -> uint8, rounded."""
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
