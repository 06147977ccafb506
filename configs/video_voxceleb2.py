"""VoxCeleb2: 4 frames of 112x112 per clip, one frame per task (paper, section 5.3).

The field takes (t, row, col); 4 experts of width 128 along time against one network of
width 256. --config.data.root: folders of extracted frames or .mp4 files.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('video')
  c.name = 'video_voxceleb2'
  c.data.update(name='voxceleb2', root='', resolution=112, frames=4, frame_stride=0)
  c.tasks.update(blocks=(4, 1, 1), split='grid')
  c.meta.batch_size = 4
  return c
