"""FFHQ 512x512, 4 strips of 512x128 (paper, section 5.2).

Needs a folder of FFHQ images: --config.data.root=/path/to/ffhq (last 10% of sorted
files are meta-test). `--config=configs/image_ffhq.py:cpu`: the CPU scale (32x32).
"""
from mclnf_jax.configs import paper


def get_config(variant=''):
  c = paper.image(variant, resolution=512)
  c.name = 'image_ffhq'
  c.data.update(name='ffhq', root='')
  if not paper.is_cpu(variant):
    c.meta.batch_size = 2
    c.eval.batch_size = 1
  return c
