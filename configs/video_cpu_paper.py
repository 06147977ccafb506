"""Video where capacity binds, on a 2-core CPU: Table 1's ordering (~22 min).

python -m mclnf_jax.main --config=configs/video_cpu_paper.py --workdir=workdir/video_cpu_paper

The video quickstart's clips (4 frames of 32x32, one frame per task) with the networks
and test-time horizon of `configs/image_cpu_paper.py`: depth 5, single networks 5 x 44
against 4 experts of 5 x 22 (6.2k against 6.5k parameters), 1024 test-time steps. A clip
holds as many values as that config's 64x64 crop (12,288), so the ratio of signal values
to parameters is the same, 2; at the quickstart's 4 x 64 networks and 128 steps every
network fits the clip and capacity, the modular method's edge, never binds.
Test-time rules and meta-training as the video quickstart (`paper.cpu_sized`).
"""
from mclnf_jax.configs import base, paper


def get_config():
  c = paper.video('cpu')
  c.name = 'video_cpu_paper'
  c.data.update(name='embedded', root='')
  c.field.depth = 5
  base.set_widths(c, 44, 22)
  c.eval.update(max_steps=1024)
  return c
