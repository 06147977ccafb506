"""City-scale NeRF MCL on the embedded procedural city, sized for a 2-core CPU.

python -m mclnf_jax.main --config=configs/nerf_quickstart.py --workdir=workdir/nerf_quickstart

10 generated blocks (7 meta-train, 3 meta-test), 2x2 ground cells as tasks, 32x32 aerial
views, 256 context rays per cell, 4 held-out views per meta-test block for metrics.
"""
from mclnf_jax import config_base


def get_config():
  c = config_base.base_config()
  c.name = 'nerf_quickstart'
  c.modality = 'nerf'
  c.data.update(name='city', resolution=32, num_val=1, num_test=3)
  c.scene.update(num_blocks=10, views_per_cell=8, heldout_views=4, rays_per_task=256)
  c.tasks.update(blocks=(2, 2), split='grid')
  c.field.update(kind='nerf', depth=4, pos_freqs=6, dir_freqs=2, skip=True)
  c.render.update(num_samples=16, hierarchical_samples=0, chunk=4096)
  c.learners = 'ol,maml_cl,mcl'
  c.methods.ol.update(width=64, tto_opt='adam', tto_lr=3e-3)
  c.methods.maml_cl.update(width=64, inner_opt='sgd', inner_lr=1.0, tto_opt='sgd', tto_lr=1.0)
  c.methods.mcl.update(width=32, inner_opt='sgd', inner_lr=1.0, tto_opt='sgd', tto_lr=1.0)
  c.meta.update(steps=200, batch_size=2, lr=1e-3, inner_steps=2, val_every=50, log_every=25,
                save_every=100)
  c.eval.update(max_steps=64, batch_size=3, num_grid=1)
  return c
