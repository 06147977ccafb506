"""Images where capacity binds, on a 2-core CPU: Table 1's ordering (~16 min).

python -m mclnf_jax.main --config=configs/image_cpu_paper.py --workdir=workdir/image_cpu_paper

The quickstart (32x32 crops, 128 test-time steps) is too small for the reason the
modular method wins at 180x180: every network fits the whole image. Here: 64x64 crops in
4 strips, 1024 test-time steps, depth 5 as the paper, single networks 5 x 44 against
4 experts of 5 x 22 (6.2k against 6.5k parameters). That is 2 signal values per
parameter where the paper's CelebA setting has 0.49 (180x180x3 over 5 x 256): at the
paper's own ratio at 64x64 (5 x 90 against 4 x (5 x 45)) every network fits the crop past
52 dB in 1024 steps and nothing binds (BUILD_NOTES, "Images where capacity binds").
Test-time rules and meta-training as the quickstart (`paper.cpu_sized`).
"""
from mclnf_jax.configs import base, paper


def get_config():
  c = paper.image('cpu')
  c.name = 'image_cpu_paper'
  c.data.update(name='embedded', root='', resolution=64)
  c.field.depth = 5
  base.set_widths(c, 44, 22)
  c.eval.update(max_steps=1024)
  return c
