"""Image MCL-NF on the embedded scikit-image crops, sized for a 2-core CPU (minutes).

python -m mclnf_jax.main --config=configs/quickstart.py --workdir=workdir/quickstart

The paper's image setting (config_paper) scaled down: 32x32 crops, 4 strips of 32x8 as
tasks, single networks 4 x 64 against 4 experts of 4 x 32 (about the same parameters).
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('image')
  c.name = 'quickstart'
  c.data.update(name='embedded', root='', resolution=32, num_val=8, num_test=8)
  c.tasks.update(blocks=(1, 4), split='grid')
  config_paper.cpu_sized(c)
  c.meta.update(steps=300, batch_size=4, lr=5e-4, inner_steps=3,
                val_every=100, log_every=100, save_every=300)
  c.eval.update(max_steps=128, batch_size=8, num_grid=2)
  return c
