"""Reconstruction metrics: PSNR, SSIM, waveform PSNR and wide-band PESQ.

`psnr`, `ssim` and `waveform_psnr` are pure `jnp` and safe under `jit` and `vmap`
(shape checks are static). `pesq_wb` runs on the host with NumPy and the `pesq`
package, which is imported lazily so this module imports without it.
"""

from __future__ import annotations

import math
import warnings

import dm_pix
import jax.numpy as jnp
import numpy as np

from mclnf_jax.errors import UserError

# Floor on the mean squared error, so a perfect reconstruction gives a finite
# PSNR: 10 * log10(peak**2 / 1e-10), i.e. 100 dB for peak 1.
MSE_FLOOR = 1e-10

# Wide-band PESQ (ITU-T P.862.2) is defined only for 16 kHz audio.
PESQ_WB_SAMPLE_RATE = 16000


def _check_same_shape(pred: jnp.ndarray, target: jnp.ndarray, name: str) -> None:
  """Raises UserError when a prediction and its target differ in shape."""
  if jnp.shape(pred) != jnp.shape(target):
    raise UserError(
        f'{name}: prediction shape {jnp.shape(pred)} differs from target shape '
        f'{jnp.shape(target)}; pass arrays of the same shape.')


def mse(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
  """Mean squared error over all elements, as a float32 scalar."""
  _check_same_shape(pred, target, 'mse')
  diff = jnp.asarray(pred, jnp.float32) - jnp.asarray(target, jnp.float32)
  return jnp.mean(jnp.square(diff))


def psnr(pred: jnp.ndarray, target: jnp.ndarray,
         peak: float | jnp.ndarray = 1.0) -> jnp.ndarray:
  """Peak signal-to-noise ratio in dB over all elements: 10*log10(peak^2/mse).

  The MSE is floored at `MSE_FLOOR`, so identical inputs give the finite maximum
  10*log10(peak^2 / 1e-10) (100 dB for peak 1) instead of +inf.
  """
  err = jnp.maximum(mse(pred, target), MSE_FLOOR)
  peak = jnp.asarray(peak, jnp.float32)
  return 20.0 * jnp.log10(peak) - 10.0 * jnp.log10(err)


def ssim(pred: jnp.ndarray, target: jnp.ndarray,
         max_val: float = 1.0) -> jnp.ndarray:
  """Structural similarity of an image [H, W, C] (or [H, W]) or a video [F, H, W, C].

  Uses `dm_pix.ssim` with the standard settings (Gaussian window 11x11, sigma 1.5,
  k1=0.01, k2=0.03, valid filtering); channels are averaged. A video's SSIM is the
  mean of its per-frame SSIMs, as is usual for video reconstruction.
  """
  _check_same_shape(pred, target, 'ssim')
  ndim = jnp.ndim(pred)
  if ndim not in (2, 3, 4):
    raise UserError(
        f'ssim: expected an image [H, W, C] or video [F, H, W, C], got shape '
        f'{jnp.shape(pred)}; reshape the signal to one of these layouts.')
  height, width = jnp.shape(pred)[-3:-1] if ndim > 2 else jnp.shape(pred)
  if min(height, width) < 11:
    raise UserError(
        f'ssim: frames of {height}x{width} are smaller than the 11x11 window; '
        'use frames of at least 11x11 pixels.')
  if ndim == 2:  # [H, W] -> [H, W, 1]
    pred, target = pred[..., None], target[..., None]
  values = dm_pix.ssim(
      jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32),
      max_val=max_val)
  return jnp.mean(values)  # a scalar for images, the frame mean for video.


def waveform_psnr(pred: jnp.ndarray, target: jnp.ndarray,
                  peak: float | None = None) -> jnp.ndarray:
  """PSNR of an audio waveform in dB: 20*log10(peak) - 10*log10(mse).

  By default the peak is the peak-to-peak range of the target clip,
  max(target) - min(target), so the score does not depend on the clip's loudness
  convention. Pass a fixed `peak` (e.g. 2.0 for audio in [-1, 1]) to use a
  global range instead. A silent target (zero range) has no defined PSNR and
  gives NaN. The MSE is floored at `MSE_FLOOR` as in `psnr`.
  """
  _check_same_shape(pred, target, 'waveform_psnr')
  if peak is None:
    target = jnp.asarray(target, jnp.float32)
    span = jnp.max(target) - jnp.min(target)
    value = psnr(pred, target, jnp.maximum(span, MSE_FLOOR))
    return jnp.where(span > 0, value, jnp.nan)
  return psnr(pred, target, peak)


def _as_mono(x: np.ndarray, name: str) -> np.ndarray:
  """Returns a clip [N] or [N, 1] as float64 [N]; raises UserError otherwise."""
  x = np.asarray(x, np.float64)
  if x.ndim == 2 and x.shape[1] == 1:
    x = x[:, 0]
  if x.ndim != 1:
    raise UserError(
        f'pesq_wb: {name} has shape {x.shape}; pass a mono clip of shape [N] or [N, 1].')
  return x


def pesq_wb_with_note(pred: np.ndarray, target: np.ndarray,
                      sample_rate: int = PESQ_WB_SAMPLE_RATE) -> tuple[float, str]:
  """Wide-band PESQ of a predicted clip against its target, with a note.

  Returns (score, '') on success. Where PESQ is undefined (silent clip, clip
  shorter than 0.25 s, non-finite samples, no utterance detected) it returns
  (nan, reason) instead of raising, so one bad clip does not stop an evaluation.
  A sample rate other than 16 kHz is a configuration mistake and raises.
  """
  if sample_rate != PESQ_WB_SAMPLE_RATE:
    raise UserError(
        f'pesq_wb: sample rate {sample_rate} Hz is not supported; wide-band PESQ '
        f'needs audio resampled to {PESQ_WB_SAMPLE_RATE} Hz.')
  pred, target = _as_mono(pred, 'pred'), _as_mono(target, 'target')
  if pred.shape != target.shape:
    raise UserError(
        f'pesq_wb: prediction length {pred.shape[0]} differs from target length '
        f'{target.shape[0]}; pass clips of the same length.')
  note = _undefined_reason(pred, target, sample_rate)
  if note:
    return math.nan, note
  import pesq  # pylint: disable=g-import-not-at-top  # optional, host-only.
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)
      return float(pesq.pesq(sample_rate, target, pred, 'wb')), ''
  except (pesq.PesqError, ValueError) as err:
    return math.nan, f'pesq failed: {type(err).__name__}: {_message(err)}'


def _undefined_reason(pred: np.ndarray, target: np.ndarray, sample_rate: int) -> str:
  """Says why PESQ cannot be computed for this pair, or '' when it can."""
  if pred.shape[0] < sample_rate // 4:
    return f'clip of {pred.shape[0]} samples is shorter than 0.25 s'
  if not np.all(np.isfinite(target)):
    return 'target has non-finite samples'
  if not np.all(np.isfinite(pred)):
    return 'prediction has non-finite samples'
  if not np.any(target):
    return 'target clip is silent'
  if not np.any(pred):
    return 'prediction is silent'
  return ''


def _message(err: Exception) -> str:
  """The text of an exception; `pesq` passes its messages as bytes."""
  arg = err.args[0] if err.args else ''
  return arg.decode(errors='replace') if isinstance(arg, bytes) else str(arg)


def pesq_wb(pred: np.ndarray, target: np.ndarray,
            sample_rate: int = PESQ_WB_SAMPLE_RATE) -> float:
  """Wide-band PESQ score, or NaN where it is undefined (see `pesq_wb_with_note`)."""
  return pesq_wb_with_note(pred, target, sample_rate)[0]
