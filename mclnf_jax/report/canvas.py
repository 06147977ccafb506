"""What every figure module shares: the Agg canvas, atomic PNGs, the method columns."""
from __future__ import annotations

import os
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mclnf_jax import files
from mclnf_jax.report.tables import order_methods

GROUND_TRUTH = 'Ground truth'


def columns(methods: Sequence[str]) -> list[str]:
  """The method columns of every grid and GIF, after the ground truth: table order."""
  return order_methods(methods)


def save_figure(path_png: str | os.PathLike, fig: Figure) -> None:
  """Renders a figure with Agg (no window, no pyplot state) to a PNG, atomically."""
  FigureCanvasAgg(fig)
  files.atomic_write(path_png, lambda f: fig.savefig(f, format='png', dpi=fig.dpi),
                     binary=True)


def below_title(fig: Figure) -> tuple[float, float, float, float]:
  """The layout box under a figure title (tight_layout alone lets panels overlap it)."""
  return (0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight())
