"""The paper's NeRF setting (section 5.5, Table 7) and its CPU variant.

Single networks of 10 layers x 512 against 4 spatial experts of 10 x 256 over a 2x2 grid
of ground cells, ReLU MLPs with positional encoding, evaluation to 1024 steps per task.
The CPU variant: 32x32 views, NeRF MLPs of 4 layers, single networks 64 wide against
experts 32 wide, 16 samples per ray, 128 fresh rays per cell per inner step in
meta-training and 1024 per test-time step, drawn from every ray of the cell's views,
100 outer steps.
"""
import ml_collections

from mclnf_jax import learners
from mclnf_jax.configs import base, paper

SINGLE_WIDTH, EXPERT_WIDTH = 512, 256


def nerf(variant: str = '') -> ml_collections.ConfigDict:
  c = base.base_config()
  c.modality = 'nerf'
  c.learners = ','.join(learners.paper_methods('nerf'))
  base.set_widths(c, SINGLE_WIDTH, EXPERT_WIDTH)
  c.field.update(kind='nerf', depth=10, pos_freqs=10, dir_freqs=4, skip=True)
  c.tasks.update(grid=(2, 2), split='grid')
  c.render.update(num_samples=64, hierarchical_samples=64, chunk=8192)
  # Table 4: ray batch 256 or 512, a fresh batch every step (from 2^17 rays per cell).
  c.scene.update(rays_per_task=512, heldout_views=8, pool_rays=1 << 17)
  c.meta.update(steps=50_000, batch_size=1, lr=5e-5, inner_steps=4, val_every=500,
                log_every=50, save_every=1000)
  c.eval.update(max_steps=1024, batch_size=1, num_shown=2)
  if paper.is_cpu(variant):
    cpu_sized(c)
  return c


def cpu_sized(c: ml_collections.ConfigDict) -> None:
  c.data.update(resolution=32, num_val=1, num_test=3)
  c.scene.update(num_blocks=10, views_per_cell=8, heldout_views=4, rays_per_task=128,
                 tto_rays_per_task=1024, pool_rays=0)   # every ray: 8 views of 32 x 32
  c.field.update(depth=4, pos_freqs=6, dir_freqs=2, skip=True)
  c.render.update(num_samples=16, hierarchical_samples=0, chunk=4096)
  base.set_widths(c, 64, 32)
  c.methods.meil_nerf.update(replay_size=128)
  # ER's buffer: its declared fraction of the signal (10% of the pool rays), as at paper scale.
  # Inner / test-time rules: plain SGD at a large rate suits ReLU NeRFs on few rays for
  # the meta-learned methods; random-init methods use Adam.
  for m in learners.METHODS:
    if m.meta_learned:
      c.methods[m.name].update(inner_opt='sgd', inner_lr=1.0, tto_opt='sgd', tto_lr=1.0)
    elif 'nerf' in m.modalities:
      c.methods[m.name].update(tto_opt='adam', tto_lr=3e-3)
  c.meta.update(steps=100, batch_size=2, lr=1e-3, inner_steps=2, val_every=25, log_every=25,
                save_every=100)
  c.eval.update(max_steps=64, batch_size=3, num_shown=1)
