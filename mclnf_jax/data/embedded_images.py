"""TFDS builder of square crops of the natural images inside scikit-image.

`EmbeddedImages` needs no download and no TensorFlow: every source image is a
file inside the scikit-image wheel, the features are plain
`tfds.features.Tensor`s, and the data is written as array_record, so
`builder.as_data_source(split)` gives random access. It is the offline stand-in
for CelebA / ImageNette / FFHQ in tests and quick experiments.

Sources (see `SOURCE_NAMES`):
  * colour: astronaut, chelsea, coffee, rocket, hubble_deep_field,
    immunohistochemistry, retina, colorwheel, logo (RGBA composited on white),
    stereo_motorcycle_left / _right (the two views of the stereo pair);
  * grayscale, repeated to 3 channels: camera, brick, grass, gravel, moon,
    coins, clock, page, horse (a binary silhouette), text;
  * `lfw_subset_000` .. `lfw_subset_199`: the 25x25 grayscale `lfw_subset()`
    patches (0-99 are faces, 100-199 are non-face patches), each used whole
    and resized to the resolution.

Each large source gives `crops_per_source` square crops at random positions
and scales (side between `min_scale` and 1 times the short side, but not below
the resolution when the source allows it), resized to `resolution` squared.
Crops are deterministic per (seed, source), independent of the split.

Splits use DISJOINT sources, so meta-test signals are never seen in
meta-training: 'test' holds `TEST_SOURCES` (astronaut, chelsea, coffee, rocket
and lfw patches 90-99 and 190-199); 'train' holds every other source.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import functools

from etils import epath
import numpy as np
from PIL import Image
import skimage.data
import tensorflow_datasets as tfds

from mclnf_jax.data import common
from mclnf_jax.data import skimage_photos
from mclnf_jax.errors import UserError

_COLOR_SOURCES = (
    'astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
    'immunohistochemistry', 'retina', 'colorwheel', 'logo',
)
_STEREO_SOURCES = ('stereo_motorcycle_left', 'stereo_motorcycle_right')
_GRAY_SOURCES = (
    'camera', 'brick', 'grass', 'gravel', 'moon', 'coins', 'clock', 'page',
    'horse', 'text',
)
_NUM_LFW = 200
_LFW_PREFIX = 'lfw_subset_'
LARGE_SOURCES = _COLOR_SOURCES + _STEREO_SOURCES + _GRAY_SOURCES
LFW_SOURCES = tuple(f'{_LFW_PREFIX}{i:03d}' for i in range(_NUM_LFW))
SOURCE_NAMES = LARGE_SOURCES + LFW_SOURCES
# Held out for meta-test. Never change for an existing version: bump VERSION.
TEST_SOURCES = ('astronaut', 'chelsea', 'coffee', 'rocket') + tuple(
    f'{_LFW_PREFIX}{i:03d}' for i in (*range(90, 100), *range(190, 200)))
SPLITS = ('train', 'test')
DEFAULT_CROPS = 32


def source_names(split: str) -> tuple[str, ...]:
  """Returns the source images of `split`; train and test never share one."""
  if split == 'test':
    return TEST_SOURCES
  if split == 'train':
    return tuple(n for n in SOURCE_NAMES if n not in TEST_SOURCES)
  raise UserError(f'unknown split {split!r}: use one of {SPLITS}')


def load_source(name: str) -> np.ndarray:
  """Loads one source image from the scikit-image wheel as uint8 [H, W, 3]."""
  if name in LFW_SOURCES:
    face = _lfw_faces()[int(name[len(_LFW_PREFIX):])]      # float [25, 25]
    return np.repeat(skimage_photos.to_uint8(face)[..., None], 3, axis=-1)
  if name in LARGE_SOURCES:
    return skimage_photos.to_uint8(skimage_photos.photo(name))
  raise UserError(f'unknown embedded source {name!r}: use one of SOURCE_NAMES')


@functools.cache
def _lfw_faces() -> np.ndarray:
  """Returns the 200 float [25, 25] `lfw_subset` patches (in the wheel)."""
  return skimage.data.lfw_subset()


def random_boxes(
    height: int, width: int, count: int, resolution: int, min_scale: float,
    rng: np.random.Generator,
) -> np.ndarray:
  """Draws `count` square crop boxes (top, left, side) inside an image."""
  short = min(height, width)
  low = max(int(round(min_scale * short)), min(resolution, short), 1)
  sides = rng.integers(low, short + 1, size=count)
  tops = rng.integers(0, height - sides + 1)
  lefts = rng.integers(0, width - sides + 1)
  return np.stack([tops, lefts, sides], axis=-1).astype(np.int32)


@dataclasses.dataclass(eq=False)
class EmbeddedImagesConfig(tfds.core.BuilderConfig):
  """Crop resolution, crops per large source, smallest crop scale and seed."""
  resolution: int = 64
  crops_per_source: int = 32
  min_scale: float = 0.25
  seed: int = 0


def config_name(resolution: int, crops_per_source: int, seed: int) -> str:
  """Names a config so each (resolution, crops, seed) gets its own folder."""
  return f'{resolution}px_{crops_per_source}crops_seed{seed}'


def make_config(
    resolution: int, crops_per_source: int = DEFAULT_CROPS, seed: int = 0
) -> EmbeddedImagesConfig:
  """Returns a preset config when one matches, else a custom one."""
  _check_int('resolution', resolution, minimum=1)
  _check_int('crops_per_source', crops_per_source, minimum=1)
  _check_int('seed', seed, minimum=0)
  name = config_name(resolution, crops_per_source, seed)
  for preset in EmbeddedImages.BUILDER_CONFIGS:
    if preset.name == name:
      return preset
  return EmbeddedImagesConfig(
      name=name, resolution=resolution, crops_per_source=crops_per_source,
      seed=seed, description=f'{resolution}x{resolution} crops, seed {seed}.')


def _check_int(field: str, value: int, minimum: int) -> None:
  """Rejects bad sizes and seeds before TFDS builds a broken dataset."""
  is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  if not is_int or value < minimum:
    raise UserError(
        f'embedded images {field} must be an integer >= {minimum}, got '
        f'{value!r}: pass e.g. --config.data.{field}={max(minimum, 32)}')


def _preset(resolution: int) -> EmbeddedImagesConfig:
  """A ready-made config at `resolution` with the default crops and seed."""
  return EmbeddedImagesConfig(
      name=config_name(resolution, DEFAULT_CROPS, 0), resolution=resolution,
      description=f'{resolution}x{resolution} crops, {DEFAULT_CROPS} per '
                  'source, seed 0.')


class EmbeddedImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Square crops of scikit-image's bundled natural images; no download needed.

  Use `EmbeddedImages(data_dir=..., resolution=32)` (plus optional
  `crops_per_source`, `seed`) or pass `config=make_config(...)`. Built as
  array_record for `as_data_source` random access.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release: scikit-image 0.26 sources, disjoint '
               'train/test sources, uint8 [R, R, 3] crops.',
  }
  BUILDER_CONFIGS = [_preset(32), _preset(64), _preset(180)]
  # TFDS 4.9 derives this with the undeclared `importlib_resources` package
  # for builders inside a package; naming the file avoids that import.
  code_path = epath.Path(__file__)

  def __init__(
      self, *, resolution: int | None = None,
      crops_per_source: int = DEFAULT_CROPS, seed: int = 0, **kwargs,
  ):
    if resolution is not None:
      if 'config' in kwargs:
        raise UserError('pass either config= or resolution= to '
                        'EmbeddedImages, not both')
      kwargs['config'] = make_config(resolution, crops_per_source, seed)
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    res = self.builder_config.resolution
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(
                shape=(res, res, 3), dtype=np.uint8, encoding='bytes'),
            'source': tfds.features.Tensor(shape=(), dtype=np.int32),
            'box': tfds.features.Tensor(shape=(3,), dtype=np.int32),
        }),
        homepage='https://scikit-image.org/docs/stable/api/skimage.data.html',
        metadata=tfds.core.MetadataDict(
            source_names=list(SOURCE_NAMES), test_sources=list(TEST_SOURCES)),
    )

  def _split_generators(self, dl_manager) -> dict[str, Iterator]:
    del dl_manager  # Everything is inside the scikit-image wheel.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    """Yields every crop of every source of `split`."""
    cfg = self.builder_config
    for name in source_names(split):
      image = load_source(name)
      if name in LFW_SOURCES:  # Tiny patches: use whole, one example each.
        boxes = np.array([[0, 0, image.shape[0]]], np.int32)
      else:
        rng = np.random.default_rng([cfg.seed, SOURCE_NAMES.index(name)])
        boxes = random_boxes(*image.shape[:2], cfg.crops_per_source,
                             cfg.resolution, cfg.min_scale, rng)
      yield from _crop_examples(name, image, boxes, cfg.resolution)


def _crop_examples(
    name: str, image: np.ndarray, boxes: np.ndarray, resolution: int
) -> Iterator[tuple[str, dict]]:
  """Yields (key, example) for each crop box of one source image."""
  source = np.int32(SOURCE_NAMES.index(name))
  pil = Image.fromarray(image)
  for k, box in enumerate(boxes):
    yield f'{name}/{k:04d}', {
        'image': common.resize_square(pil, resolution, box),
        'source': source,
        'box': np.asarray(box, np.int32),
    }


def build(
    data_dir: str, resolution: int, crops_per_source: int = DEFAULT_CROPS,
    seed: int = 0,
) -> EmbeddedImages:
  """Builds into `data_dir` unless already built there; returns the builder."""
  builder = EmbeddedImages(
      data_dir=data_dir, resolution=resolution,
      crops_per_source=crops_per_source, seed=seed)
  if not builder.is_prepared():
    builder.download_and_prepare()
  return builder

