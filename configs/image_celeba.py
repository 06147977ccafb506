"""CelebA 180x180 (178x178 crop + 1-pixel pad), 4 strips of 180x45 (paper, section 5.2).

Needs TFDS `celeb_a` prepared as array_record under --config.data.root.
`--config=configs/image_celeba.py:cpu` is the same data at the CPU scale (32x32).
"""
from mclnf_jax.configs import paper


def get_config(variant=''):
  c = paper.image(variant, resolution=180)
  c.name = 'image_celeba'
  c.data.update(name='celeb_a')   # data.root '': TFDS's default data_dir (configs/base.py)
  return c
