"""Audio [L, 1] in [-1, 1] at 16 kHz: t -> amplitude; tasks are consecutive segments.

PSNR is on the waveform with the peak taken as the clip's peak-to-peak range (the
convention of the paper's references, `metrics.waveform_psnr`); PESQ (wide band) is
computed on the host and is NaN, with the reason logged, where it is undefined (silence).
"""
import dataclasses
import os

import jax
import numpy as np
from absl import logging

from mclnf_jax import metrics
from mclnf_jax.tasks.grid import GridTasks

SAMPLE_RATE = 16_000


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

  def save_visuals(self, path_stem: str, truths, recons, scores) -> None:
    """WAV files of each reconstruction and a waveform + spectrogram plot per clip."""
    import soundfile
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    for i, (truth, recon, score) in enumerate(zip(truths, recons, scores)):
      panels = {'ground truth': truth, **recon}
      for name, wave in panels.items():
        path = f'{path_stem}_{i}_{name.replace(" ", "_")}.wav'
        tmp = path + '.tmp.wav'
        soundfile.write(tmp, np.clip(wave[:, 0], -1, 1), SAMPLE_RATE)
        os.replace(tmp, path)
      fig = Figure(figsize=(10, 1.6 * len(panels)), dpi=80)
      axes = fig.subplots(len(panels), 2, squeeze=False)
      for row, (name, wave) in zip(axes, panels.items()):
        label = f'{name} {score[name]:.2f} dB' if name in score else name
        row[0].plot(np.arange(len(wave)) / SAMPLE_RATE, wave[:, 0], linewidth=0.3)
        row[0].set_title(label, fontsize=8)
        with np.errstate(divide='ignore'):     # silent stretches have -inf dB
          row[1].specgram(wave[:, 0], Fs=SAMPLE_RATE, NFFT=512, noverlap=384)
      fig.tight_layout()
      tmp = f'{path_stem}_{i}.tmp.png'
      FigureCanvasAgg(fig).print_png(tmp)
      os.replace(tmp, f'{path_stem}_{i}.png')
