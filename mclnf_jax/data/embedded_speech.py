"""Embedded speech: real eSpeak-NG speech, built once into a TFDS dataset.

LibriSpeech needs a large download, so tests and smoke runs use speech that is
synthesised on this machine instead (see `espeak`: libespeak-ng from the PyPI
package `espeakng-loader`, driven through ctypes). Every clip is a
real formant-synthesised English sentence (so it has pitch, formants, pauses
and silence like read speech), rendered by several voices at several pitch and
speaking-rate settings, resampled from 22.05 kHz to 16 kHz, cut or zero-padded
to a fixed length and peak-normalised to [-1, 1].

The 'train' and 'test' splits use DISJOINT sentences: sentence `i` goes to
'test' iff `i % 5 == 4` (12 of the 60 sentences), so test clips are words the
model never saw, in the same voices.

The builder is not a registered TFDS package: build it with
`EmbeddedSpeech(data_dir=..., config=config_for(seconds))` and
`download_and_prepare(file_format='array_record')`, then read it with
`as_data_source(split)` (no TensorFlow needed, all features are Tensors).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.data.espeak import synthesize
from mclnf_jax.errors import UserError

_SILENCE_LEVEL = 0.01  # Below this fraction of the peak a sample is silence.
_PEAK = 0.95  # Peak amplitude after normalisation (headroom below 1.0).

# Sixty plain English sentences, written for this project (9-14 words each so a
# rendition lasts about three seconds at a normal speaking rate).
SENTENCES: tuple[str, ...] = (
    'The morning train was late again, so we walked to the office.',
    'She painted the old fence a bright shade of green last weekend.',
    'A cold wind came down from the hills just before the storm.',
    'Please put the blue folder on the shelf next to the printer.',
    'My grandfather kept bees behind the barn for almost forty years.',
    'We could hear children laughing in the park across the street.',
    'The bakery on the corner sells warm bread every day at seven.',
    'He forgot his umbrella and arrived at the meeting soaking wet.',
    'Small boats rocked gently in the harbour as the sun went down.',
    'The library will be closed on Monday for the public holiday.',
    'Our neighbour planted tomatoes, beans and onions in her garden.',
    'The concert started an hour late because the singer lost her voice.',
    'Turn left at the church and follow the road to the river.',
    'They spent the whole afternoon fixing the roof of the shed.',
    'A tiny grey kitten was sleeping on top of the warm radiator.',
    'The museum has a large collection of maps from the last century.',
    'I would like a cup of tea with a little milk, please.',
    'The farmer drove his tractor slowly along the muddy country lane.',
    'Every winter the lake freezes and people skate across the ice.',
    'She wrote a long letter to her sister who lives abroad.',
    'The students listened carefully while the teacher explained the rules.',
    'Heavy rain flooded the basement and ruined several boxes of books.',
    'The old clock in the hall stopped at exactly half past three.',
    'We packed sandwiches, apples and water for the long mountain hike.',
    'The pilot announced that we would land twenty minutes early.',
    'Bright red leaves covered the path through the quiet autumn forest.',
    'My brother repairs bicycles in a small workshop near the station.',
    'The chef added a pinch of salt and tasted the soup again.',
    'Nobody expected the football match to end without a single goal.',
    'The new bridge will connect the two villages on either side.',
    'A family of ducks crossed the road and stopped all the traffic.',
    'He practised the piano for two hours before the final exam.',
    'The garden gate creaked loudly whenever the wind blew from the west.',
    'Fresh snow fell overnight and covered the cars parked outside.',
    'Her favourite book tells the story of a sailor lost at sea.',
    'The shop assistant helped me find a warm coat for the winter.',
    'We watched the stars from the roof until it was nearly midnight.',
    'The village market is busiest on Saturday mornings in the summer.',
    'They found an old silver coin buried under the apple tree.',
    'The doctor told him to drink more water and rest for a week.',
    'Thick fog made it hard to see the lighthouse from the shore.',
    'The children built a sandcastle with towers, walls and a deep moat.',
    'Remember to switch off the lights when you leave the kitchen.',
    'The bus driver waited patiently while the old man climbed aboard.',
    'A strong smell of coffee drifted out of the open cafe door.',
    'The river was so clear that we could see fish near the bottom.',
    'She learned to speak three languages while travelling around the world.',
    'The workers finished painting the school just before the holidays.',
    'Our car broke down on the motorway and we called for help.',
    'Tall sunflowers lined the edge of the field behind the farmhouse.',
    'The postman left a heavy parcel on the step by the front door.',
    'We spent the evening playing cards and telling stories by the fire.',
    'The baby finally fell asleep after a long walk in the pram.',
    'The hotel room had a lovely view of the mountains and the lake.',
    'He carefully wrapped the glass vase in paper before moving house.',
    'The orchestra tuned up while the audience slowly found their seats.',
    'Dark clouds gathered over the valley and thunder rolled in the distance.',
    'My aunt bakes the best cherry pie in the whole town.',
    'The gardener trimmed the hedges and swept the leaves from the lawn.',
    'At the end of the day the tired team celebrated their victory.',
)

# eSpeak-NG voice names: bundled accents, some with a bundled voice variant.
VOICES: tuple[str, ...] = (
    'en-us',
    'en-us+f3',
    'en-gb-x-rp',
    'en-gb-x-rp+f2',
    'en-gb-scotland+m3',
    'en-029+f4',
)

# (speaking rate in words per minute, pitch 0..100) pairs.
SETTINGS: tuple[tuple[int, int], ...] = ((165, 45), (190, 65))

_TEST_EVERY = 5  # Sentence i is a test sentence iff i % 5 == 4.


def split_sentence_ids(split: str) -> list[int]:
  """Ids of the sentences in a split; 'train' and 'test' never share one."""
  ids = range(len(SENTENCES))
  test = [i for i in ids if i % _TEST_EVERY == _TEST_EVERY - 1]
  if split == 'test':
    return test
  if split == 'train':
    return [i for i in ids if i not in test]
  raise UserError(
      f"embedded speech: unknown split '{split}'; use 'train' or 'test'.")


def to_clip(wav: np.ndarray, length: int) -> np.ndarray:
  """Trims silence at both ends, cuts/zero-pads to [length], peak-normalises."""
  peak = float(np.max(np.abs(wav))) if wav.size else 0.0
  if peak == 0.0:
    return np.zeros((length,), np.float32)
  loud = np.flatnonzero(np.abs(wav) > _SILENCE_LEVEL * peak)
  wav = wav[loud[0]:loud[-1] + 1][:length]
  clip = np.zeros((length,), np.float32)
  clip[:wav.size] = wav * (_PEAK / float(np.max(np.abs(wav))))
  return clip


@dataclasses.dataclass(eq=False)
class EmbeddedSpeechConfig(tfds.core.BuilderConfig):
  """Clip length and the voices x (rate, pitch) renditions of every sentence."""
  seconds: float = 3.0
  voices: tuple[str, ...] = VOICES
  settings: tuple[tuple[int, int], ...] = SETTINGS

  @property
  def length(self) -> int:
    """Samples per clip."""
    return int(round(self.seconds * SAMPLE_RATE))


def config_for(seconds: float) -> EmbeddedSpeechConfig:
  """Default voices/settings with clips of `seconds` (a config per length)."""
  if not seconds > 0:
    raise UserError(f'embedded speech: seconds must be > 0, got {seconds}; '
                    'set data.seconds (e.g. 3.0).')
  return _config_for_millis(int(round(seconds * 1000)))


@functools.cache
def _config_for_millis(millis: int) -> EmbeddedSpeechConfig:
  """One shared config object per length (TFDS compares configs by identity)."""
  return EmbeddedSpeechConfig(
      name=f'clip_{millis}ms',
      seconds=millis / 1000.0,
      description=f'{millis / 1000.0:g}-second clips, default voices.')


class EmbeddedSpeech(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """eSpeak-NG sentences x voices x (rate, pitch) as fixed-length clips."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
      '1.0.0': ('Initial release: 60 sentences (48 train / 12 test, '
                'disjoint) x 6 voices x 2 (rate, pitch) settings, 16 kHz, '
                'peak 0.95.'),
  }
  BUILDER_CONFIGS = [config_for(3.0), config_for(1.0)]
  DEFAULT_CONFIG_NAME = 'clip_3000ms'

  def _info(self) -> tfds.core.DatasetInfo:
    """Tensor-only features so building and reading need no TensorFlow."""
    length = self.builder_config.length
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # Raw bytes: ~100x faster to write than a float list.
            'audio': tfds.features.Tensor(
                shape=(length,), dtype=np.float32,
                encoding=tfds.features.Encoding.BYTES),
            'sentence_id': tfds.features.Tensor(shape=(), dtype=np.int32),
            'voice_id': tfds.features.Tensor(shape=(), dtype=np.int32),
            'setting_id': tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict(sample_rate=SAMPLE_RATE),
    )

  def _split_generators(self, dl_manager):
    """Two splits over disjoint sentence sets; nothing is downloaded."""
    del dl_manager
    return {s: self._generate_examples(s) for s in ('train', 'test')}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    """Yields one clip per (sentence, voice, setting) of the split."""
    config = self.builder_config
    for sid in split_sentence_ids(split):
      for vid, voice in enumerate(config.voices):
        for tid, (rate, pitch) in enumerate(config.settings):
          wav = synthesize(SENTENCES[sid], voice, rate, pitch)
          yield f'{sid:03d}_{vid:02d}_{tid:02d}', {
              'audio': to_clip(wav, config.length),
              'sentence_id': np.int32(sid),
              'voice_id': np.int32(vid),
              'setting_id': np.int32(tid),
          }


def build(data_dir: str, config: EmbeddedSpeechConfig) -> EmbeddedSpeech:
  """Builds the dataset in `data_dir` unless already there; returns it."""
  builder = EmbeddedSpeech(data_dir=data_dir, config=config)
  builder.download_and_prepare(file_format='array_record')
  return builder
