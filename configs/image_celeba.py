"""CelebA 180x180 (178x178 crop + 1-pixel pad), 4 strips of 180x45 (paper, section 5.2).

Needs TFDS `celeb_a` prepared as array_record under --config.data.root.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('image')
  c.name = 'image_celeba'
  c.data.update(name='celeb_a', root='~/tensorflow_datasets', resolution=180)
  c.tasks.update(blocks=(1, 4), split='grid')
  return c
