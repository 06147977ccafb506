"""Tests for mclnf_jax.metrics: known values, reference SSIM, PESQ edge cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mclnf_jax import metrics
from mclnf_jax.errors import UserError


def _image_pair(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
  """A smooth image with structure, and a noisy copy of it, in [0, 1]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  base = np.stack([0.5 + 0.4 * np.sin(6 * xx + 2 * c) * np.cos(4 * yy - c)
                   for c in range(3)], axis=-1)
  noisy = np.clip(base + 0.08 * rng.standard_normal(base.shape), 0.0, 1.0)
  return noisy.astype(np.float32), base.astype(np.float32)


def _speech_like(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
  """A voiced, amplitude-modulated harmonic tone that PESQ treats as speech."""
  t = np.arange(int(seconds * rate)) / rate
  phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 1.5 * t)) / rate
  voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
  return 0.2 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) ** 2


def test_psnr_of_known_mse():
  target = jnp.zeros((8, 8, 3))
  pred = jnp.full((8, 8, 3), 0.1)  # mse 0.01 -> 20 dB at peak 1.
  np.testing.assert_allclose(metrics.psnr(pred, target), 20.0, atol=1e-4)
  # peak 2 adds 20*log10(2) dB.
  np.testing.assert_allclose(metrics.psnr(pred, target, peak=2.0),
                             20.0 + 20 * math.log10(2), atol=1e-4)


def test_psnr_identical_inputs_is_capped():
  x = jnp.ones((4, 4))
  np.testing.assert_allclose(metrics.psnr(x, x), 100.0, atol=1e-3)


def test_psnr_jits_and_vmaps():
  preds = jnp.stack([jnp.full((4, 4), v) for v in (0.1, 0.01)])
  values = jax.jit(jax.vmap(metrics.psnr, in_axes=(0, None)))(preds, jnp.zeros((4, 4)))
  np.testing.assert_allclose(values, [20.0, 40.0], atol=1e-3)


def test_psnr_shape_mismatch_is_user_error():
  with pytest.raises(UserError, match='shape'):
    metrics.psnr(jnp.zeros((4, 4)), jnp.zeros((4, 5)))


def test_ssim_matches_skimage():
  pred, target = _image_pair()
  expected = structural_similarity(
      pred, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=1.0, channel_axis=-1)
  assert 0.2 < expected < 0.95  # a non-trivial pair.
  np.testing.assert_allclose(metrics.ssim(pred, target), expected, atol=1e-4)


def test_ssim_of_identical_images_is_one():
  pred, _ = _image_pair()
  np.testing.assert_allclose(metrics.ssim(pred, pred), 1.0, atol=1e-5)


def test_ssim_of_video_is_frame_mean():
  a, b = _image_pair(seed=0)
  c, d = _image_pair(seed=1)
  video = jax.jit(metrics.ssim)(np.stack([a, c]), np.stack([b, d]))
  expected = (metrics.ssim(a, b) + metrics.ssim(c, d)) / 2
  np.testing.assert_allclose(video, expected, atol=1e-6)


def test_ssim_rejects_bad_shapes():
  with pytest.raises(UserError, match='layout'):
    metrics.ssim(jnp.zeros((16,)), jnp.zeros((16,)))
  with pytest.raises(UserError, match='11x11'):
    metrics.ssim(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 3)))


def test_waveform_psnr_uses_target_range():
  target = jnp.array([-0.5, 0.5, 0.0, 0.25])  # peak-to-peak range 1.
  pred = target + 0.1  # mse 0.01 -> 20 dB.
  np.testing.assert_allclose(metrics.waveform_psnr(pred, target), 20.0, atol=1e-4)
  np.testing.assert_allclose(metrics.waveform_psnr(pred, target, peak=2.0),
                             20.0 + 20 * math.log10(2), atol=1e-4)


def test_waveform_psnr_of_silent_target_is_nan():
  assert np.isnan(metrics.waveform_psnr(jnp.ones(8), jnp.zeros(8)))


def test_pesq_clean_is_high_and_noise_lowers_it():
  clean = _speech_like()
  noisy = clean + 1e-3 * np.random.default_rng(0).standard_normal(clean.shape)
  score, note = metrics.pesq_wb_with_note(clean, clean)
  assert score > 4.0 and note == ''
  assert metrics.pesq_wb(noisy[:, None], clean) < score - 1.0  # [N, 1] accepted.


@pytest.mark.parametrize('pred, target, reason', [
    (np.zeros(16000), np.zeros(16000), 'silent'),
    (np.ones(100), np.ones(100), 'shorter'),
    (np.full(16000, np.nan), _speech_like(), 'non-finite'),
])
def test_pesq_undefined_gives_nan_with_note(pred, target, reason):
  score, note = metrics.pesq_wb_with_note(pred, target)
  assert math.isnan(score) and reason in note
  assert math.isnan(metrics.pesq_wb(pred, target))


def test_pesq_without_utterance_gives_nan_with_note():
  hum = np.sin(2 * np.pi * 20 * np.arange(16000) / 16000)  # 20 Hz: below speech.
  score, note = metrics.pesq_wb_with_note(hum, hum)
  assert math.isnan(score) and 'pesq failed' in note


def test_pesq_rejects_other_sample_rates():
  with pytest.raises(UserError, match='16000'):
    metrics.pesq_wb(np.zeros(8000), np.zeros(8000), sample_rate=8000)
