"""The curve record every table and plot reads, and its checks.

Evaluation gives, for every method, the metric after k test-time optimisation steps,
for the shared list of evaluated steps (1, 2, 4, ..., max)::

  steps = [1, 2, 4, ..., 4096]              # shared by every method and metric
  curves = {                                # `Curves`: method -> metric -> values
      'mcl': {'psnr': np.array([...]), 'ssim': np.array([...])},
      'er': {'psnr': np.array([...])},
  }

`curves[method][metric][i]` is the value at `steps[i]`; NaN marks a value that could
not be computed (the tables print "n/a"). Method keys are the learner names (`ol`,
`cl`, `er`, ...); unknown keys are reported under the group "Other". Several datasets
side by side (as in the paper's Table 1) are a mapping dataset name -> `Curves`, passed
as `datasets=` instead of `curves`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mclnf_jax.errors import UserError

Curves = Mapping[str, Mapping[str, np.ndarray]]


def as_datasets(curves: Curves | None,
                datasets: Mapping[str, Curves] | None) -> dict[str, Curves]:
  """One dataset's `curves` or several `datasets` as dataset -> Curves."""
  if (curves is None) == (datasets is None):
    raise UserError('report: pass exactly one of `curves` (one dataset) or '
                    '`datasets` (name -> curves).')
  return {'': curves} if datasets is None else dict(datasets)


def curve_values(steps: Sequence[int], curves: Curves, method: str,
                 metric: str) -> np.ndarray | None:
  """The values of one method and metric as float64, or None when absent."""
  if metric not in curves.get(method, {}):
    return None
  values = np.asarray(curves[method][metric], np.float64).reshape(-1)
  if values.shape[0] != len(steps):
    raise UserError(
        f'report: {method}/{metric} has {values.shape[0]} values for {len(steps)} '
        'steps; give one value per evaluated step.')
  return values
