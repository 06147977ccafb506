"""Image MCL-NF on the embedded scikit-image crops, sized for a 2-core CPU (minutes).

python -m mclnf_jax.main --config=configs/quickstart.py --workdir=workdir/quickstart

The paper's image setting at its CPU scale (`mclnf_jax.configs.paper.image('cpu')`):
32x32 crops, 4 strips of 32x8 as tasks, single networks 4 x 64 against 4 experts of
4 x 32 (about the same parameters).
"""
from mclnf_jax.configs import paper


def get_config():
  c = paper.image('cpu')
  c.name = 'quickstart'
  c.data.update(name='embedded', root='')
  return c
