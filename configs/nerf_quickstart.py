"""City-scale NeRF MCL on the embedded procedural city, sized for a 2-core CPU.

python -m mclnf_jax.main --config=configs/nerf_quickstart.py --workdir=workdir/nerf_quickstart

The paper's NeRF setting at its CPU scale (`mclnf_jax.configs.nerf`): 10 generated blocks
(7 meta-train, 3 meta-test), 2x2 ground cells as tasks, 32x32 aerial views, context rays
per cell 128 for meta-training and 1024 at test time (of the 8192 its views hold), 4
held-out views per meta-test block for metrics.
"""
from mclnf_jax.configs import nerf


def get_config():
  c = nerf.nerf('cpu')
  c.name = 'nerf_quickstart'
  c.data.name = 'city'
  return c
