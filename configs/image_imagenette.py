"""ImageNette 160x160, 4 strips of 160x40 (paper, section 5.2).

Needs TFDS `imagenette` prepared as array_record under --config.data.root.
`--config=configs/image_imagenette.py:cpu` is the same data at the CPU scale (32x32).
"""
from mclnf_jax.configs import paper


def get_config(variant=''):
  c = paper.image(variant, resolution=160)
  c.name = 'image_imagenette'
  c.data.update(name='imagenette')   # data.root '': TFDS's default data_dir (base.py)
  return c
