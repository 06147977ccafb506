"""Image datasets as float32 [N, H, W, 3] arrays in [0, 1]: `load_images`.

Formats (`cfg.name`), for your own data:
  * 'image_folder': the .png/.jpg/.jpeg files under `cfg.root` (searched
    recursively, sorted by path). If `cfg.root` holds both a `train/` and a
    `test/` folder, each split reads its own folder; otherwise the last
    max(1, N // 10) files are 'test' and the rest 'train'. Centre square crop
    resized to the resolution (antialiased bicubic); an image smaller than the
    resolution is an error.
  * 'embedded': crops of the images inside the scikit-image wheel (see
    `embedded_images`); built once into `cfg.root` (default
    ~/.cache/mclnf_jax/tfds), any resolution, no download.

Dataset presets (thin settings over a format or a TFDS dataset):
  * 'ffhq': 'image_folder' always split by the last tenth (FFHQ's 70,000 files
    give 63,000 / 7,000), at the paper's 512.
  * 'celeb_a': TFDS `celeb_a` (train/test), 178x178 centre crop plus 1-pixel
    zero padding -> 180x180 as in the paper; resolution must be 180.
  * 'imagenette': TFDS `imagenette` default config ('test' reads
    'validation'), centre square crop resized to the resolution (160 in the
    paper); the rare image smaller than that is upsampled.

TFDS datasets are read by random access (`tfds.data_source`), so they must be
prepared as array_record. `tfds.features.Image` then decodes with OpenCV or,
if absent, Pillow: TensorFlow is not needed.

`cfg.num_signals` > 0 keeps that many images, drawn without replacement by
`cfg.seed` (sorted, so the order is stable); 0 keeps the whole split.
`cfg.seed` also seeds the crop positions of 'embedded', and the optional
`cfg.crops_per_source` (default 32) sets how many crops each of its sources
gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import concurrent.futures
import dataclasses
import os

import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mclnf_jax.data import common
from mclnf_jax.data import embedded_images
from mclnf_jax.errors import UserError

CELEB_A_RESOLUTION = 180
_CELEB_A_CROP = 178
_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
_CHUNK = 256  # image files decoded at a time: bounds in-flight uint8 images.
_ARRAY_RECORD = tfds.core.file_adapters.FileFormat.ARRAY_RECORD


@dataclasses.dataclass(frozen=True)
class _Request:
  """The validated fields of the data config, plus the split."""
  name: str
  root: str
  split: str
  resolution: int
  num_signals: int
  seed: int
  crops_per_source: int


# A loader returns how many images it yields and an iterator of uint8 [R, R, 3].
_Loader = Callable[[_Request], tuple[int, Iterator[np.ndarray]]]


def load_images(cfg: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """Loads `split` of dataset `cfg.name` as float32 [N, R, R, 3] in [0, 1]."""
  request = _parse(cfg, split)
  count, images = _LOADERS[request.name](request)
  out = np.empty(
      (count, request.resolution, request.resolution, 3), np.float32)
  for i, image in enumerate(images):
    np.divide(image, np.float32(255.0), out=out[i])
  return out


def _parse(cfg: ml_collections.ConfigDict, split: str) -> _Request:
  """Checks the config fields and the split; raises UserError on bad values."""
  name, root = common.name_and_root(cfg, split, tuple(_LOADERS), 'image')
  return _Request(
      name=name, root=root, split=split,
      resolution=common.int_field(cfg, 'resolution', minimum=1),
      num_signals=common.int_field(cfg, 'num_signals', minimum=0),
      seed=common.int_field(cfg, 'seed', minimum=0),
      crops_per_source=cfg.get(
          'crops_per_source', embedded_images.DEFAULT_CROPS))


# ----------------------------------------------------------------- embedded --


def _load_embedded(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """Builds the scikit-image crops once in the data dir, then reads them."""
  builder = embedded_images.build(
      common.embedded_dir(request.root), request.resolution, request.crops_per_source, request.seed)
  source = builder.as_data_source(request.split)
  return _read_source(source, request, lambda image, _: image)


# ---------------------------------------------------------- TFDS datasets --


def _load_celeb_a(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """Reads TFDS celeb_a: 178x178 centre crop padded by 1 pixel to 180x180."""
  if request.resolution != CELEB_A_RESOLUTION:
    raise UserError(
        f'celeb_a images are {CELEB_A_RESOLUTION}x{CELEB_A_RESOLUTION} '
        f'(178x178 centre crop + 1-pixel zero padding), not '
        f'{request.resolution}: pass '
        f'--config.data.resolution={CELEB_A_RESOLUTION}')
  source = _open_tfds('celeb_a', request.root, request.split)
  return _read_source(source, request, _celeb_a_crop)


def _celeb_a_crop(image: np.ndarray, index: int) -> np.ndarray:
  """Centre-crops 178x178 and zero-pads one pixel on each side."""
  height, width = image.shape[:2]
  if min(height, width) < _CELEB_A_CROP:
    raise UserError(
        f'celeb_a example {index} is {width}x{height}, smaller than the '
        f'{_CELEB_A_CROP}x{_CELEB_A_CROP} crop: re-prepare celeb_a with TFDS')
  top, left = (height - _CELEB_A_CROP) // 2, (width - _CELEB_A_CROP) // 2
  crop = image[top:top + _CELEB_A_CROP, left:left + _CELEB_A_CROP, :3]
  return np.pad(crop, ((1, 1), (1, 1), (0, 0)))


def _load_imagenette(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """Reads TFDS imagenette ('test' is its 'validation' split), square-resized.

  Images smaller than the resolution are upsampled: ImageNet has a few, and
  they have no file name to report.
  """
  tfds_split = 'validation' if request.split == 'test' else request.split
  source = _open_tfds('imagenette', request.root, tfds_split)
  return _read_source(
      source, request, lambda image, _: common.resize_center_square(image, request.resolution))


def _open_tfds(name: str, root: str, split: str) -> Sequence[dict]:
  """Opens a prepared array_record TFDS split, or says what is missing."""
  if root and not os.path.isdir(root):
    raise UserError(f'TFDS data dir {root} does not exist: pass '
                    f'--config.data.root=<TFDS data_dir that holds {name}>')
  data_dir = root or None
  try:
    return tfds.data_source(
        name, data_dir=data_dir, split=split, download=False)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS raises several types (NotImplementedError, AssertionError, ...).
    raise UserError(_tfds_problem(name, data_dir, e)) from e


def _tfds_problem(name: str, data_dir: str | None, error: Exception) -> str:
  """Says why a TFDS dataset could not be opened and how to fix it."""
  where = data_dir or 'the default TFDS data_dir'
  build = (f'`tfds build {name} --data_dir={data_dir or "<data_dir>"} '
           '--file_format=array_record`')
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared, file_format = builder.is_prepared(), builder.info.file_format
  except Exception:  # pylint: disable=broad-except
    prepared, file_format = False, None
  if not prepared:
    return (f'TFDS dataset {name} is not prepared in {where}: prepare it '
            f'with {build} (downloads it) and pass '
            '--config.data.root=<that data_dir>')
  if file_format != _ARRAY_RECORD:
    stored = getattr(file_format, 'value', file_format)
    return (f'TFDS dataset {name} in {where} is stored as {stored}, but '
            f'random access needs array_record: run `tfds convert_format '
            f'--dataset_dir={data_dir or "<data_dir>"}/{name} '
            f'--out_file_format=array_record` or rebuild with {build}')
  return (f'cannot open TFDS dataset {name} in {where} ({common.one_line(error)}): '
          f'rebuild it with {build}')


def _read_source(
    source: Sequence[dict], request: _Request,
    preprocess: Callable[[np.ndarray, int], np.ndarray],
) -> tuple[int, Iterator[np.ndarray]]:
  """Reads and preprocesses the 'image' of each chosen example, lazily."""
  if len(source) == 0:  # pylint: disable=g-explicit-length-test
    raise UserError(f'dataset {request.name} has no {request.split} examples: '
                    f'check --config.data.root={request.root}')
  indices = common.choose_indices(len(source), request.num_signals, request.seed)

  def images() -> Iterator[np.ndarray]:
    for index in indices:  # One by one: TFDS mocks break `__getitems__`.
      image = preprocess(source[int(index)]['image'], int(index))
      yield _check_shape(image, request, int(index))

  return len(indices), images()


def _check_shape(
    image: np.ndarray, request: _Request, index: int) -> np.ndarray:
  """Guards against TFDS data whose shape differs from what was asked."""
  want = (request.resolution, request.resolution, 3)
  if image.shape != want or image.dtype != np.uint8:
    raise UserError(
        f'{request.name} example {index} is {image.dtype}{list(image.shape)}, '
        f'expected uint8{list(want)}: re-prepare the dataset')
  return image


# ------------------------------------------------------ image_folder, ffhq --


def folder_files(root: str, split: str, rule: str = 'auto', label: str = 'image') -> list[str]:
  """Lists `split`'s image files under `root` by split `rule` (see common.SPLIT_RULES);
  `label` names the folder in errors ('image', 'FFHQ')."""
  files = common.files_under(root, _IMAGE_SUFFIXES, label, '.png/.jpg images')
  chosen = common.split_folder_items(root, files, split,
                                     f'.png/.jpg images in {label} folder {root}', rule)
  return [str(p) for p in chosen]


def ffhq_files(root: str, split: str) -> list[str]:
  """FFHQ's split: the last max(1, N // 10) sorted image files are test."""
  return folder_files(root, split, 'last_tenth', 'FFHQ')


def read_image_file(path: str, resolution: int) -> np.ndarray:
  """Decodes an image file, centre-crops a square and resizes it to R x R."""
  if os.path.getsize(path) == 0:
    raise UserError(f'image file {path} is empty: delete it or replace it with '
                    'a valid image')
  try:
    with Image.open(path) as pil:
      pil.load()
      image = np.asarray(pil.convert('RGB'), dtype=np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise UserError(f'cannot read image file {path} ({common.one_line(e)}): '
                    'delete it or replace it with a valid image') from e
  height, width = image.shape[:2]
  if min(height, width) < resolution:
    raise UserError(
        f'image {path} is {width}x{height}, smaller than the requested '
        f'{resolution}x{resolution}: use larger images or lower '
        '--config.data.resolution')
  return common.resize_center_square(image, resolution)


def _read_files(files: list[str], request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """Reads the chosen files of a split, decoding on threads."""
  paths = [files[i] for i in common.choose_indices(
      len(files), request.num_signals, request.seed)]

  def images() -> Iterator[np.ndarray]:
    workers = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for start in range(0, len(paths), _CHUNK):
        chunk = paths[start:start + _CHUNK]
        yield from pool.map(
            lambda p: read_image_file(p, request.resolution), chunk)

  return len(paths), images()


def _load_image_folder(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """The 'image_folder' format: train/ and test/ folders, else the last tenth."""
  return _read_files(folder_files(request.root, request.split), request)


def _load_ffhq(request: _Request) -> tuple[int, Iterator[np.ndarray]]:
  """The 'ffhq' preset: an image folder split by the last tenth."""
  return _read_files(ffhq_files(request.root, request.split), request)


FORMATS: dict[str, _Loader] = {
    'embedded': _load_embedded,
    'image_folder': _load_image_folder,
}
PRESETS: dict[str, _Loader] = {
    'ffhq': _load_ffhq,
    'celeb_a': _load_celeb_a,
    'imagenette': _load_imagenette,
}
_LOADERS: dict[str, _Loader] = {**FORMATS, **PRESETS}
