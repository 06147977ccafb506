"""The embedded procedural city at the paper's NeRF model sizes (for a GPU).

python -m mclnf_jax.main --config=configs/nerf_city.py --workdir=workdir/nerf_city
"""
from mclnf_jax.configs import nerf


def get_config(variant=''):
  c = nerf.nerf(variant)
  c.name = 'nerf_city'
  c.data.name = 'city'
  if not variant:
    c.data.update(resolution=96, num_val=2, num_test=9)
    c.scene.update(num_blocks=40, views_per_cell=16, heldout_views=8)
  return c
