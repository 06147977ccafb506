"""Video MCL-NF on embedded clips (a camera moving over scikit-image photos), 2-core CPU.

python -m mclnf_jax.main --config=configs/video_quickstart.py --workdir=workdir/video_quickstart

4 frames of 32x32 per clip, one frame per task; (t, row, col) -> RGB.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('video')
  c.name = 'video_quickstart'
  c.data.update(name='embedded', root='', resolution=32, frames=4, frame_stride=1,
                num_val=8, num_test=8)
  c.tasks.update(blocks=(4, 1, 1), split='grid')
  config_paper.cpu_sized(c)
  c.meta.update(steps=300, batch_size=2, lr=5e-4, inner_steps=3,
                val_every=100, log_every=50, save_every=300)
  c.eval.update(max_steps=128, batch_size=4, num_grid=1)
  return c
