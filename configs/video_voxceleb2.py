"""VoxCeleb2: 4 frames of 112x112 per clip, one frame per task (paper, section 5.3).

The field takes (t, row, col); 4 experts of width 128 along time against one network of
width 256. --config.data.root: folders of extracted frames or .mp4 files.
`--config=configs/video_voxceleb2.py:cpu`: the CPU scale (32x32).
"""
from mclnf_jax.configs import paper


def get_config(variant=''):
  c = paper.video(variant, resolution=112)
  c.name = 'video_voxceleb2'
  c.data.update(name='voxceleb2', root='')
  return c
