"""FFHQ 512x512, 4 strips of 512x128 (paper, section 5.2).

Needs a folder of FFHQ images: --config.data.root=/path/to/ffhq (last 10% of sorted
files are meta-test).
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('image')
  c.name = 'image_ffhq'
  c.data.update(name='ffhq', root='', resolution=512)
  c.tasks.update(blocks=(1, 4), split='grid')
  c.meta.batch_size = 2
  c.eval.batch_size = 1
  return c
