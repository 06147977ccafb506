"""Scene figures: panel grids (RGB / depth / opacity per method) and expert-routing maps."""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from mclnf_jax.errors import UserError
from mclnf_jax.report.canvas import GROUND_TRUTH, below_title, columns, save_figure
from mclnf_jax.report.tables import display_name
from mclnf_jax.visuals import Panel, PanelGrid, RoutingMap


def panel_grid(path_png: str | os.PathLike, grid: PanelGrid) -> None:
  """A row of panels for the ground truth, then one per method in table order; each
  panel titled with the row's name (display name) and its own title, text below."""
  methods = columns(grid.recons)
  rows = [(GROUND_TRUTH, list(grid.truth))] + [(display_name(m), list(grid.recons[m]))
                                               for m in methods]
  n_cols = max(len(panels) for _, panels in rows)
  fig = Figure(figsize=(max(1.75 * n_cols, 5.0), 2.05 * len(rows) + 0.6), dpi=100)
  axes = fig.subplots(len(rows), n_cols, squeeze=False)
  for r, (name, panels) in enumerate(rows):
    for c in range(n_cols):
      ax = axes[r, c]
      panel = panels[c] if c < len(panels) else Panel(None)
      _show_panel(ax, panel, f'{name}\n{panel.title}' if panel.title else name)
  if grid.title:
    fig.suptitle(grid.title, fontsize='medium')
  fig.tight_layout(rect=below_title(fig) if grid.title else None)
  save_figure(path_png, fig)


def _show_panel(ax, panel: Panel, title: str) -> None:
  """One panel; a thin grey frame around an image (an all-white opacity stays visible)."""
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(panel.image is not None)
    spine.set_color('0.7')
    spine.set_linewidth(0.6)
  ax.set_title(title, fontsize='x-small')
  if panel.below:
    ax.set_xlabel(panel.below, fontsize='x-small')
  if panel.image is None:
    ax.text(0.5, 0.5, 'n/a', ha='center', va='center', fontsize='x-small', color='0.6',
            transform=ax.transAxes)
    return
  image = np.asarray(panel.image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 3:
    ax.imshow(np.clip(image, 0.0, 1.0), interpolation='nearest')
  elif image.ndim == 2:
    ax.imshow(image, cmap=panel.cmap or 'gray', vmin=panel.vmin, vmax=panel.vmax,
              interpolation='nearest')
  else:
    raise UserError(f'panel_grid: image of shape {image.shape}; pass [H, W, 3] or [H, W].')


def routing_map(path_png: str | os.PathLike, spec: RoutingMap) -> None:
  """Top-down: the ground picture (if any), and the expert owning each ground point in
  its colour over it, expert numbers at the cells' centres, context cameras as dots (and
  the ground points they look at as crosses) in their task's colour."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  labels = np.asarray(spec.labels)
  num = int(labels.max()) + 1
  palette = colormaps['tab10'](np.arange(num) % 10)
  xmin, xmax, ymin, ymax = spec.extent
  extent = (xmin, xmax, ymin, ymax)
  panels = 2 if spec.image is not None else 1
  fig = Figure(figsize=(4.6 * panels, 4.9), dpi=100)
  axes = fig.subplots(1, panels, squeeze=False)[0]
  owner = f'{display_name(spec.method)}, step {spec.step}' if spec.method else ''
  if spec.image is not None:
    axes[0].imshow(np.clip(spec.image, 0, 1), extent=extent, interpolation='nearest')
    axes[0].set_title(f'Top-down render ({owner})', fontsize='small')
  ax = axes[-1]
  if spec.image is not None:
    ax.imshow(np.clip(spec.image, 0, 1), extent=extent, interpolation='nearest')
  ax.imshow(labels, extent=extent, cmap=ListedColormap(palette), vmin=-0.5,
            vmax=num - 0.5, alpha=0.45 if spec.image is not None else 0.8,
            interpolation='nearest')
  h, w = labels.shape
  xs = xmin + (np.arange(w) + 0.5) / w * (xmax - xmin)
  ys = ymax - (np.arange(h) + 0.5) / h * (ymax - ymin)
  ax.contour(xs, ys, labels, levels=np.arange(num) + 0.5, colors='k', linewidths=1.0)
  ax.plot([xmin, xmax, xmax, xmin, xmin], [ymin, ymin, ymax, ymax, ymin], 'k-', lw=1.0)
  for e in range(num):
    rows, cols = np.nonzero(labels == e)
    if rows.size:
      ax.text(xs[cols].mean(), ys[rows].mean(), f'expert {e}', ha='center', va='center',
              fontsize='small', weight='bold', color='k',
              bbox=dict(boxstyle='round,pad=0.2', fc='white', alpha=0.7, lw=0))
  lo_x, hi_x, lo_y, hi_y = xmin, xmax, ymin, ymax
  if spec.points is not None and len(spec.points):
    points = np.asarray(spec.points)
    task = (np.asarray(spec.point_labels) if spec.point_labels is not None
            else np.zeros(len(points), int))
    colours = [palette[t % num] if t >= 0 else (0.5, 0.5, 0.5, 1.0) for t in task]
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=14, edgecolors='k',
               linewidths=0.5, label='context cameras', zorder=3)
    if spec.anchors is not None:
      anchors = np.asarray(spec.anchors)
      ax.scatter(anchors[:, 0], anchors[:, 1], c=colours, s=14, marker='x',
                 linewidths=1.0, label='ground point each looks at', zorder=3)
      points = np.concatenate([points, anchors])
    lo_x, hi_x = min(lo_x, points[:, 0].min()), max(hi_x, points[:, 0].max())
    lo_y, hi_y = min(lo_y, points[:, 1].min()), max(hi_y, points[:, 1].max())
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc='lower center', ncol=2, fontsize='small', frameon=False)
  pad = 0.04 * max(hi_x - lo_x, hi_y - lo_y)
  ax.set_xlim(lo_x - pad, hi_x + pad)
  ax.set_ylim(lo_y - pad, hi_y + pad)
  ax.set_title('Expert of each ground point', fontsize='small')
  for a in axes:
    a.set_aspect('equal')
    a.set_xlabel('x', fontsize='small')
    a.set_ylabel('y', fontsize='small')
    a.tick_params(labelsize='x-small')
  if spec.title:
    fig.suptitle(spec.title, fontsize='medium')
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  save_figure(path_png, fig)
