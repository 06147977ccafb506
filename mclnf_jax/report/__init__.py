"""Host-side reporting: the paper's tables (Markdown + CSV), curves, figures.

  curves.py   the curve record (method -> metric -> values per step) and its checks
  tables.py   Table 1 and Table 6 as Markdown and CSV, summaries, method names and order
  figures.py  drawing any spec (`draw`): curve plots, image grids, WAVs with their plots
  animation.py  GIFs and MP4s;  scene_figures.py  RGB/depth/opacity grids, routing maps
  canvas.py   what they share (atomic PNGs, method columns)
  run.py      a run's report, from what its modality asks to show (`mclnf_jax.visuals`)

Every file is written through `mclnf_jax.files.atomic_write`, so a crash never leaves a
half-written report.
"""
from mclnf_jax.report.curves import Curves
from mclnf_jax.report.animation import write_gif
from mclnf_jax.report.figures import draw, image_grid, plot_curves, write_audio
from mclnf_jax.report.run import save_flythroughs, write_report
from mclnf_jax.report.tables import (
    DISPLAY_NAMES,
    GROUP_NAMES,
    LOWER_IS_BETTER,
    METHOD_GROUPS,
    METRIC_NAMES,
    ComputeRow,
    Summary,
    display_name,
    method_group,
    order_methods,
    summarize,
    write_compute_table,
    write_curves_csv,
    write_table,
)

__all__ = [
    'Curves', 'ComputeRow', 'DISPLAY_NAMES', 'GROUP_NAMES', 'LOWER_IS_BETTER',
    'METHOD_GROUPS', 'METRIC_NAMES', 'Summary', 'display_name', 'draw', 'image_grid',
    'method_group', 'order_methods', 'plot_curves', 'save_flythroughs', 'summarize',
    'write_audio', 'write_compute_table', 'write_curves_csv', 'write_gif', 'write_report',
    'write_table',
]
