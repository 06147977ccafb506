"""The embedded procedural city at the paper's NeRF model sizes (for a GPU).

python -m mclnf_jax.main --config=configs/nerf_city.py --workdir=workdir/nerf_city
"""
from mclnf_jax import config_nerf


def get_config():
  c = config_nerf.paper_nerf_config()
  c.name = 'nerf_city'
  c.data.update(name='city', resolution=96, num_val=2, num_test=9)
  c.scene.update(num_blocks=40, views_per_cell=16, heldout_views=8)
  return c
