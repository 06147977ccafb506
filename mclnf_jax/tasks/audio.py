"""Audio [L, 1] in [-1, 1] at 16 kHz: t -> amplitude; tasks are consecutive segments.

PSNR is on the waveform with the peak taken as the clip's peak-to-peak range (the
convention of the paper's references, `metrics.waveform_psnr`); PESQ (wide band) is
computed on the host and is NaN, with the reason logged, where it is undefined (silence).
"""
import dataclasses

import jax
import numpy as np
from absl import logging

from mclnf_jax import metrics
from mclnf_jax.data.common import SAMPLE_RATE
from mclnf_jax.tasks.grid import GridTasks
from mclnf_jax.visuals import AudioClips


@dataclasses.dataclass(frozen=True)
class AudioTasks(GridTasks):

  def metrics(self, pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    return {'psnr': metrics.waveform_psnr(pred[:, 0], target[:, 0])}

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
