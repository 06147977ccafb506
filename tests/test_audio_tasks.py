"""Audio as GradNCP fits it: waveforms in [-1, 1] are data in [0, 1] with a +0.5 output
offset (targets y / 2, zero output = silence), PSNR on that fixed range."""
import numpy as np

from mclnf_jax.tasks.audio import AudioTasks

TASKS = AudioTasks(shape=(64,), channels=1, grid=(4,))
WAVE = (0.8 * np.sin(np.linspace(0, 20, 64)))[:, None].astype(np.float32)


def test_targets_are_half_the_waveform_and_to_signal_undoes_it():
  e = TASKS.episode(WAVE)
  np.testing.assert_allclose(e.query_y, WAVE / 2)
  np.testing.assert_allclose(e.context_y.reshape(-1, 1), WAVE / 2)    # 4 segments in order
  np.testing.assert_allclose(TASKS.to_signal(e.query_y), WAVE)


def test_psnr_is_on_the_fixed_range_not_the_clips_own():
  quiet = WAVE * 0.1
  silence = np.zeros_like(quiet)
  # Predicting silence: PSNR = 10 log10(1 / mse) on [0, 1] data, whatever the clip's range.
  expected = 10 * np.log10(1 / np.mean((quiet / 2) ** 2))
  got = float(TASKS.metrics(silence, quiet)['psnr'])
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert np.isfinite(float(TASKS.metrics(silence, silence)['psnr']))   # silent clips too
