"""LibriSpeech: 3-second clips at 16 kHz, 4 consecutive segments as tasks (section 5.4).

--config.data.name=librispeech reads TFDS (needs the `tf` extra); audio_dir reads a
folder of .flac/.wav files (e.g. the extracted LibriSpeech tree) with no TensorFlow.
"""
from mclnf_jax import config_paper


def get_config():
  c = config_paper.paper_grid_config('audio')
  c.name = 'audio_librispeech'
  c.data.update(name='audio_dir', root='', seconds=3.0)
  c.tasks.update(blocks=(4,), split='grid')
  c.field.update(w0=30.0, w0_first=3000.0)   # Sitzmann et al.'s audio SIREN
  return c
