"""Audio [L, 1] in [-1, 1] at 16 kHz: t -> amplitude; tasks are consecutive segments.

The field fits the waveform as data in [0, 1] with a +0.5 output offset, the convention
of GradNCP (the line of work the paper follows for audio): targets are y / 2, so a zero
output is silence. PSNR is on that fixed range (peak 1 on [0, 1], i.e. peak 2 on the
waveform), not on each clip's own peak-to-peak range; PESQ (wide band) is computed on
the host on the waveform and is NaN, with the reason logged, where it is undefined.
"""
import dataclasses

import jax
import numpy as np
from absl import logging

from mclnf_jax import metrics
from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.tasks.grid import GridTasks
from mclnf_jax.types import Episode
from mclnf_jax.visuals import AudioClips

HALF = np.float32(0.5)      # waveform [-1, 1] -> [0, 1] data minus the 0.5 output offset


@dataclasses.dataclass(frozen=True)
class AudioTasks(GridTasks):

  def episode(self, signal: np.ndarray) -> Episode:
    e = super().episode(signal)
    return e._replace(context_y=e.context_y * HALF, query_y=e.query_y * HALF)

  def to_signal(self, y: jax.Array) -> jax.Array:
    """Field values (y / 2) -> the waveform in [-1, 1]."""
    return super().to_signal(y) / HALF

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return {'psnr': metrics.waveform_psnr(pred[:, 0], target[:, 0], peak=2.0)}

  def host_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    value, note = metrics.pesq_wb_with_note(np.clip(pred[:, 0], -1, 1), target[:, 0],
                                            SAMPLE_RATE)
    if note:
      logging.log_first_n(logging.WARNING, 'PESQ undefined: %s', 3, note)
    return {'pesq': value}

  def visuals(self, truths, recons, scores) -> list[AudioClips]:
    """Per clip i: `reconstructions_<i>_<method>.wav` (and `_ground_truth.wav`) and
    `reconstructions_<i>.png` with the waveform and spectrogram of each."""
    return [AudioClips(f'_{i}', SAMPLE_RATE, np.asarray(truth)[:, 0],
                       {m: np.asarray(r)[:, 0] for m, r in recon.items()}, dict(score))
            for i, (truth, recon, score) in enumerate(zip(truths, recons, scores))]

  def flythrough_rays(self, signal) -> None:
    return None
