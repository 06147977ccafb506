"""ImageNette 160x160, 4 strips of 160x40 (paper, section 5.2).

Needs TFDS `imagenette` prepared as array_record under --config.data.root.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('image')
  c.name = 'image_imagenette'
  c.data.update(name='imagenette', root='~/tensorflow_datasets', resolution=160)
  c.tasks.update(blocks=(1, 4), split='grid')
  return c
