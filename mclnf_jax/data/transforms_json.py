"""Reader for nerfstudio / Blender `transforms.json` scenes.

Supported fields: top-level intrinsics as either `camera_angle_x` (optionally
`camera_angle_y`; principal point at the image centre) or `fl_x` [, `fl_y`, `cx`,
`cy`, `w`, `h`]; `frames[].file_path` relative to the json's folder, with or without
an extension; `frames[].transform_matrix`, a 4x4 camera-to-world in OpenGL axes (the
convention of both formats, so no axis flip is applied). Per-frame intrinsics and
distortion are not supported. Images are resized on load and intrinsics scaled to
match; RGBA images are composited over `background`.

Every problem with the files is a one-line UserError naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image

from mclnf_jax.data import scene as scene_lib
from mclnf_jax.data.common import fail, one_line
from mclnf_jax.errors import UserError

_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.PNG', '.JPG', '.JPEG')
# Blender synthetic scenes (the format's origin) render between 2 and 6 units.
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0


def read_json(path: str, what: str = 'transforms file') -> dict[str, Any]:
  """The JSON object at path; UserError if missing, malformed or not an object."""
  if not os.path.isfile(path):
    raise UserError(f'{path}: {what} not found; check the path (it should be a '
                    f'{os.path.basename(path)} beside the images)')
  try:
    with open(path, encoding='utf-8') as f:
      meta = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'{path}: malformed JSON ({one_line(e)}); fix or '
                    're-export the file') from None
  if not isinstance(meta, dict):
    raise UserError(f'{path}: expected a JSON object at the top level, got '
                    f'{type(meta).__name__}; re-export the file')
  return meta


def get_field(meta: dict[str, Any], key: str, source: str, prefix: str = '') -> Any:
  """meta[key]; UserError naming the field when it is missing."""
  if key not in meta:
    fail(source, prefix + key, 'missing; add it (see the nerfstudio / Blender '
          'transforms.json format)')
  return meta[key]


def get_number(meta: dict[str, Any], key: str, source: str, prefix: str = '') -> float:
  value = get_field(meta, key, source, prefix)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(
      value):
    fail(source, prefix + key, f'expected a finite number, got {value!r}')
  return float(value)


def get_angle(meta: dict[str, Any], key: str, source: str, prefix: str = '') -> float:
  """A field of view in radians, in (0, pi)."""
  angle = get_number(meta, key, source, prefix)
  if not 0 < angle < np.pi:
    fail(source, prefix + key, f'expected a field of view in (0, pi) radians, got {angle}')
  return angle


def get_matrix(meta: dict[str, Any], key: str, source: str, prefix: str = '',
               shape: tuple[int, ...] = (4, 4)) -> np.ndarray:
  """meta[key] as a float64 array of the given shape, finite."""
  value = get_field(meta, key, source, prefix)
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    arr = None
  if arr is None or arr.shape != shape:
    got = 'ragged or non-numeric' if arr is None else f'shape {arr.shape}'
    fail(source, prefix + key, f'expected a {"x".join(map(str, shape))} matrix of '
          f'numbers, got {got}')
  if not np.all(np.isfinite(arr)):
    fail(source, prefix + key, 'contains NaN or inf; fix the pose')
  return arr


def get_frames(meta: dict[str, Any], source: str) -> list[dict[str, Any]]:
  frames = get_field(meta, 'frames', source)
  if not isinstance(frames, list) or not frames:
    fail(source, 'frames', 'expected a non-empty list of frames')
  for i, frame in enumerate(frames):
    if not isinstance(frame, dict):
      fail(source, f'frames[{i}]', 'expected an object with file_path and '
            'transform_matrix')
  return frames


# ---------------------------------------------------------------- images


def resolve_image(folder: str, file_path: Any, source: str, field: str) -> str:
  """The image file for a frame; tries common extensions when there is none."""
  if not isinstance(file_path, str) or not file_path:
    fail(source, field, f'expected a relative image path, got {file_path!r}')
  base = os.path.normpath(os.path.join(folder, file_path))
  candidates = [base] + ([base + e for e in _EXTENSIONS]
                         if not os.path.splitext(base)[1].lower() in _EXTENSIONS else [])
  for path in candidates:
    if os.path.isfile(path):
      return path
  fail(source, field, f'image {base} not found (tried {", ".join(_EXTENSIONS[:3])} '
        'when no extension); fix the path or add the image')


def read_rgb(path: str, background: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
  """Image file -> float32 [H, W, 3] in [0, 1] (grey repeated, alpha composited)."""
  with Image.open(path) as img:
    arr = np.asarray(img)
  scale = 65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0
  arr = arr.astype(np.float32) / scale
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  if arr.shape[-1] == 4:   # over the background: c * a + bg * (1 - a)
    alpha = arr[..., 3:]
    arr = arr[..., :3] * alpha + np.asarray(background, np.float32) * (1 - alpha)
  return np.clip(arr[..., :3], 0.0, 1.0)


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """[H, W, 3] -> [size[1], size[0], 3]; box filter (area average) when shrinking."""
  w, h = size
  if img.shape[1] == w and img.shape[0] == h:
    return img
  shrink = w <= img.shape[1] and h <= img.shape[0]
  method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
  chans = [np.ascontiguousarray(img[..., c], np.float32) for c in range(3)]  # [H, W]
  chans = [np.asarray(Image.fromarray(c).resize((w, h), method)) for c in chans]
  return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)


def read_images(paths: Sequence[str], source: str, field: str,
                resize: tuple[int, int] | None,
                background: Sequence[float] = (1.0, 1.0, 1.0),
                ) -> tuple[np.ndarray, tuple[int, int]]:
  """Loads same-sized images: (images [V, H, W, 3], original (W, H))."""
  images, size0 = [], None
  for i, path in enumerate(paths):
    try:
      img = read_rgb(path, background)
    except (OSError, ValueError) as e:
      fail(source, f'{field}[{i}]', f'cannot read image {path} ({one_line(e)}); replace it')
    size = (img.shape[1], img.shape[0])
    if size0 is None:
      size0 = size
    elif size != size0:
      fail(source, f'{field}[{i}]', f'image {path} is {size[0]}x{size[1]} but '
            f'{paths[0]} is {size0[0]}x{size0[1]}; all views must share one size')
    images.append(resize_rgb(img, resize) if resize else img)
  return np.stack(images).astype(np.float32), size0


def check_resize(resize: Any, source: str) -> tuple[int, int] | None:
  if resize is None:
    return None
  if (len(resize) != 2 or any(int(v) != v or v <= 0 for v in resize)):
    fail(source, 'resize', f'expected (width, height) positive integers, got {resize}')
  return int(resize[0]), int(resize[1])


# ---------------------------------------------------------------- intrinsics


def _intrinsics(meta: dict[str, Any], size0: tuple[int, int],
                source: str) -> tuple[float, float, float, float]:
  """(fx, fy, cx, cy) at the original image size."""
  w0, h0 = size0
  for key, actual in (('w', w0), ('h', h0)):
    if key in meta and int(get_number(meta, key, source)) != actual:
      fail(source, key, f'says {meta[key]} but the images are {w0}x{h0}; fix the '
            'json or the images')
  if 'fl_x' in meta:
    fx = get_number(meta, 'fl_x', source)
    fy = get_number(meta, 'fl_y', source) if 'fl_y' in meta else fx
    cx = get_number(meta, 'cx', source) if 'cx' in meta else w0 / 2
    cy = get_number(meta, 'cy', source) if 'cy' in meta else h0 / 2
  elif 'camera_angle_x' in meta:
    fx = scene_lib.focal_from_angle(get_angle(meta, 'camera_angle_x', source), w0)
    fy = (scene_lib.focal_from_angle(get_angle(meta, 'camera_angle_y', source), h0)
          if 'camera_angle_y' in meta else fx)
    cx, cy = w0 / 2, h0 / 2
  else:
    fail(source, 'camera_angle_x', "missing (and no 'fl_x'); add camera_angle_x "
          'or fl_x/fl_y/cx/cy')
  if not (0 < fx < np.inf and 0 < fy < np.inf):
    fail(source, 'fl_x/camera_angle_x', f'focal lengths must be positive, got '
          f'{fx}, {fy}')
  return fx, fy, cx, cy


def scale_intrinsics(intr: tuple[float, float, float, float], size0: tuple[int, int],
                     size: tuple[int, int]) -> tuple[float, float, float, float]:
  """Intrinsics for images resized from size0 to size (both (W, H))."""
  sx, sy = size[0] / size0[0], size[1] / size0[1]
  fx, fy, cx, cy = intr
  return fx * sx, fy * sy, cx * sx, cy * sy


# ---------------------------------------------------------------- loader


def cache_key(path: str, **options: Any) -> str:
  st = os.stat(path)
  text = json.dumps([os.path.abspath(path), st.st_mtime_ns, st.st_size, options],
                    sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()


def load_transforms_json(
    path: str, *, resize: tuple[int, int] | None = None, near: float | None = None,
    far: float | None = None, bounds: scene_lib.Bounds | None = None,
    ground_z: float | None = None, cache_dir: str | None = None,
    background: Sequence[float] = (1.0, 1.0, 1.0)) -> scene_lib.Scene:
  """A Scene from a transforms.json, images resized to resize=(W, H) if given.

  near/far: explicit values, else the json's `near`/`far`, else Blender's 2 and 6.
  bounds: the ground region for cells, else the span of the views' anchor points
  (see scene.views_by_cell). cache_dir: keep a .npz per (file, options) there.
  """
  resize = check_resize(resize, path)
  key = None
  if cache_dir:
    key = cache_key(path, resize=resize, near=near, far=far, bounds=bounds,
                     ground_z=ground_z, background=list(background))
    cache = os.path.join(cache_dir, f'transforms_{key[:16]}.npz')
    cached = scene_lib.load_scene_npz(cache, key)
    if cached is not None:
      return cached
  scene = _load_uncached(path, resize, near, far, bounds, ground_z, background)
  if key:
    scene_lib.save_scene_npz(scene, cache, key)
  return scene


def _load_uncached(path, resize, near, far, bounds, ground_z, background):
  meta = read_json(path)
  frames = get_frames(meta, path)
  folder = os.path.dirname(os.path.abspath(path))
  paths = [resolve_image(folder, get_field(f, 'file_path', path, f'frames[{i}].'),
                         path, f'frames[{i}].file_path') for i, f in enumerate(frames)]
  c2w = np.stack([get_matrix(f, 'transform_matrix', path, f'frames[{i}].')
                  for i, f in enumerate(frames)])                    # [V, 4, 4]
  scene_lib.check_rotations(c2w, path, 'frames[].transform_matrix')
  images, size0 = read_images(paths, path, 'frames[].file_path', resize, background)
  intr = scale_intrinsics(_intrinsics(meta, size0, path), size0,
                          (images.shape[2], images.shape[1]))
  if near is None:
    near = get_number(meta, 'near', path) if 'near' in meta else BLENDER_NEAR
  if far is None:
    far = get_number(meta, 'far', path) if 'far' in meta else BLENDER_FAR
  scene = scene_lib.Scene(
      images=images, c2w=c2w.astype(np.float32), focal=intr[:2], principal=intr[2:],
      near=float(near), far=float(far),
      bounds=bounds or scene_lib.bounds_of_views(c2w, ground_z),
      ground_z=ground_z, name=path)
  return scene.validate()
