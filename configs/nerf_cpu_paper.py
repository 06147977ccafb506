"""City NeRF where each expert's views stay over its own cell, at a longer horizon (~18 min).

python -m mclnf_jax.main --config=configs/nerf_cpu_paper.py --workdir=workdir/nerf_cpu_paper

The NeRF quickstart's aerial views look in from 1.5 units up at 30 degrees: only 49% of
a cell's context lies over the cell its expert renders (`launch.cell_coverage`), so at
equal parameters the experts carry their neighbours' ground. The paper's city cells are
large against a view's footprint. Here the drones fly lower, steeper and narrower
(altitude 1.2, tilt 15, field of view 45: 81% own cell), and every learner fits 256
test-time steps of 256 fresh rays per cell under one rule, Adam 3e-3 (the random-init
learners' rule; at 64 steps it lifts every meta-learned learner over its SGD rule,
BUILD_NOTES). Networks and meta-training as the quickstart (`configs/nerf.py`).
"""
from mclnf_jax import learners
from mclnf_jax.configs import nerf


def get_config():
  c = nerf.nerf('cpu')
  c.name = 'nerf_cpu_paper'
  c.data.name = 'city'
  c.scene.update(altitude=1.2, tilt_deg=15.0, fov_deg=45.0, tto_rays_per_task=256)
  for name in learners.paper_methods('nerf'):
    c.methods[name].update(tto_opt='adam', tto_lr=3e-3)
  c.eval.update(max_steps=256)
  return c
