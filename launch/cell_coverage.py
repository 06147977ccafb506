"""How much of what each NeRF expert is fitted to lies in its own cell.

python -m launch.cell_coverage --config=configs/nerf_quickstart.py

A task is a ground cell; its expert is fitted to whole rays of the cell's context views,
but at render time it is given only the points over its own cell. Prints, per block of
both splits, the share of the context pixels' surface points that lie in their own
cell (`data.scene.own_cell_fraction`), then the mean over every cell: 1 means each
expert is fitted only to what it will render.
"""
import json
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from mclnf_jax import process
from mclnf_jax.data import scene as scene_lib
from mclnf_jax.data.signals import scene_signals
from mclnf_jax.errors import UserError

config_flags.DEFINE_config_file('config', None, 'A NeRF config whose scenes have depth.',
                                lock_config=True)


def coverage(config) -> list[dict]:
  """One line per block, then the summary line."""
  grid, lines, shares = tuple(config.tasks.grid), [], []
  for split, signals in scene_signals(config).items():
    for signal in signals:
      cells = scene_lib.own_cell_fraction(signal.context, grid)
      shares.append(cells)
      lines.append({'split': split, 'block': signal.context.name,
                    'own_cell_fraction': [round(float(c), 3) for c in cells]})
  shares = np.concatenate(shares)
  lines.append({'cells': int(shares.size), 'mean': round(float(shares.mean()), 3),
                'min': round(float(shares.min()), 3), 'max': round(float(shares.max()), 3)})
  return lines


def main(argv):
  del argv
  process.configure()
  try:
    for line in coverage(flags.FLAGS.config):
      print(json.dumps(line))
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
