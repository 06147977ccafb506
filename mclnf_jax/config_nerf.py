"""The paper's NeRF setting (section 5.5, Table 7), shared by configs/nerf_*.py.

Single networks of 10 layers x 512 against 4 spatial experts of 10 x 256 over a 2x2 grid
of ground cells, ReLU MLPs with positional encoding, evaluation to 1024 steps per task.
"""
import ml_collections

from mclnf_jax import config_base

SINGLE_WIDTH, EXPERT_WIDTH = 512, 256
# The rows of the paper's NeRF table, plus OL as the random-init reference.
NERF_LEARNERS = ('ol', 'er', 'ewc', 'meil_nerf', 'mol', 'maml_cl', 'oml', 'mcl', 'mcl_fim')


def paper_nerf_config() -> ml_collections.ConfigDict:
  c = config_base.base_config()
  c.modality = 'nerf'
  c.learners = ','.join(NERF_LEARNERS)
  for name in c.methods:
    c.methods[name].width = EXPERT_WIDTH if name.startswith('mcl') else SINGLE_WIDTH
  c.field.update(kind='nerf', depth=10, pos_freqs=10, dir_freqs=4, skip=True)
  c.tasks.update(blocks=(2, 2), split='grid')
  c.render.update(num_samples=64, hierarchical_samples=64, chunk=8192)
  c.scene.update(rays_per_task=512, heldout_views=8)   # Table 4: ray batch 256 or 512
  c.meta.update(steps=50_000, batch_size=1, lr=5e-5, inner_steps=4, val_every=500,
                log_every=50, save_every=1000)
  c.eval.update(max_steps=1024, batch_size=1, num_grid=2)
  return c
