"""Video MCL-NF on embedded clips (a camera moving over scikit-image photos), 2-core CPU.

python -m mclnf_jax.main --config=configs/video_quickstart.py --workdir=workdir/video_quickstart

The paper's video setting at its CPU scale: 4 frames of 32x32 per clip, one frame per task.
"""
from mclnf_jax.configs import paper


def get_config():
  c = paper.video('cpu')
  c.name = 'video_quickstart'
  c.data.update(name='embedded', root='')
  return c
