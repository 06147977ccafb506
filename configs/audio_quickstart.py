"""Audio MCL-NF on embedded speech (espeak-ng voices bundled in a PyPI wheel), 2-core CPU.

python -m mclnf_jax.main --config=configs/audio_quickstart.py --workdir=workdir/audio_quickstart

The paper's audio setting at its CPU scale: 1-second clips at 16 kHz, 4 consecutive
segments of 0.25 s as tasks; t -> amplitude.
"""
from mclnf_jax.configs import paper


def get_config():
  c = paper.audio('cpu')
  c.name = 'audio_quickstart'
  c.data.update(name='embedded', root='')
  return c
