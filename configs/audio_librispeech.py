"""LibriSpeech: 3-second clips at 16 kHz, 4 consecutive segments as tasks (section 5.4).

--config.data.name=librispeech reads TFDS (needs the `tf` extra); audio_dir reads a
folder of .flac/.wav files (e.g. the extracted LibriSpeech tree) with no TensorFlow.
`--config=configs/audio_librispeech.py:cpu`: the CPU scale (1-second clips).
"""
from mclnf_jax.configs import paper


def get_config(variant=''):
  c = paper.audio(variant)
  c.name = 'audio_librispeech'
  c.data.update(name='audio_dir', root='')
  return c
