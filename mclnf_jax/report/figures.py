"""All drawing: curve plots, reconstruction grids, GIFs (and MP4s), WAVs with their
plots, panel grids (RGB / depth / opacity) and expert-routing maps.

`draw(stem, visual)` draws any spec of `mclnf_jax.visuals` (what a modality asks to be
shown). Methods appear in the tables' order under the paper's names in every figure:
grid columns and GIF panels alike are ground truth, then `order_methods` of the keys.
Every file goes through `files.atomic_write`; figures use the Agg canvas directly and
never open a window.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mclnf_jax import files
from mclnf_jax.errors import UserError
from mclnf_jax.report.curves import Curves, as_datasets, curve_values
from mclnf_jax.report.tables import (DEFAULT_DECIMALS, METHOD_GROUPS, METRIC_DECIMALS,
                                     METRIC_NAMES, display_name, order_methods)
from mclnf_jax.visuals import (Animation, AudioClips, ImageGrid, Panel, PanelGrid,
                               RoutingMap, Visual)

GROUND_TRUTH = 'Ground truth'
METRIC_UNITS = {'psnr': 'dB'}   # metrics not listed have no unit
STEP_AXIS = 'test-time steps per task'
LABEL_HEIGHT = 16          # pixels of the name strip above each GIF panel
_GAP = 2                   # pixels between GIF panels


def draw(path_stem: str | os.PathLike, visual: Visual, metric: str = 'psnr',
         steps: Mapping[str, int] | None = None, dataset: str = '') -> list[str]:
  """Draws one spec to its files, named `<path_stem><visual.suffix>...`; returns their
  paths.

  metric: what an `ImageGrid`'s scores are; steps: method -> the test-time step its
  reconstruction is from; dataset: named in the grid's title.
  """
  stem = os.fspath(path_stem) + visual.suffix
  if isinstance(visual, ImageGrid):
    image_grid(stem + '.png', list(visual.truths), list(visual.recons), list(visual.scores),
               metric=metric, steps=steps, dataset=dataset)
    return [stem + '.png']
  if isinstance(visual, Animation):
    written = []
    if 'gif' in visual.formats:
      write_gif(stem + '.gif', visual)
      written.append(stem + '.gif')
    if 'mp4' in visual.formats and write_mp4(stem + '.mp4', visual):
      written.append(stem + '.mp4')
    return written
  if isinstance(visual, AudioClips):
    write_audio(stem, visual)
    return [stem + '.png'] + [f'{stem}_{n}.wav' for n in
                              ['ground_truth'] + columns(visual.recons)]
  if isinstance(visual, PanelGrid):
    panel_grid(stem + '.png', visual)
    return [stem + '.png']
  if isinstance(visual, RoutingMap):
    routing_map(stem + '.png', visual)
    return [stem + '.png']
  raise TypeError(f'draw: {type(visual).__name__} is not a spec of mclnf_jax.visuals')


def columns(methods: Sequence[str]) -> list[str]:
  """The method columns of every grid and GIF, after the ground truth: table order."""
  return order_methods(methods)


def save_figure(path_png: str | os.PathLike, fig: Figure) -> None:
  """Renders a figure with Agg (no window, no pyplot state) to a PNG, atomically."""
  FigureCanvasAgg(fig)
  files.atomic_write(path_png, lambda f: fig.savefig(f, format='png', dpi=fig.dpi),
                     binary=True)


def _method_colors(methods: Sequence[str]) -> dict[str, tuple]:
  """A stable colour per method key, the same in every plot."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  cmap = colormaps['tab20']  # dark shades (even) first, then the light ones.
  known = [m for group in METHOD_GROUPS.values() for m in group]
  index = {m: i for i, m in enumerate(known + [m for m in methods if m not in known])}
  return {m: cmap((2 * index[m]) % 20 + (2 * index[m] // 20) % 2) for m in methods}


# ------------------------------------------------------------------- curves ---


def metric_label(metric: str) -> str:
  """'PSNR (dB)', 'SSIM', ...: the metric's display name and unit."""
  name = METRIC_NAMES.get(metric, metric)
  unit = METRIC_UNITS.get(metric)
  return f'{name} ({unit})' if unit else name


def plot_curves(path_png: str | os.PathLike, steps: Sequence[int],
                curves: Curves | None, metric: str,
                datasets: Mapping[str, Curves] | None = None, dataset: str = '') -> None:
  """Plots metric against test-time steps per task, one line per method (the paper's
  Fig. 2): a log2 x axis labelled 1, 2, 4, ..., the metric and dataset in the title and
  a legend of the paper's names below the panels.

  One dataset's `curves` (named `dataset` in the title) gives one panel; `datasets`
  gives one panel each.
  """
  by_dataset = as_datasets(curves, datasets)
  methods = order_methods([m for c in by_dataset.values() for m in c if metric in c[m]])
  if not methods:
    raise UserError(f'plot_curves: no method has metric {metric!r}; check the '
                    'metric name against the curve record.')
  colors = _method_colors(methods)
  x = np.asarray(steps, np.float64)
  panels = len(by_dataset)
  fig = Figure(figsize=(max(4.8, 4.2 * panels), 3.9), dpi=110)
  axes = fig.subplots(1, panels, squeeze=False)[0]
  handles, labels = [], []
  for ax, (name, c) in zip(axes, by_dataset.items()):
    for m in methods:
      values = curve_values(steps, c, m, metric)
      if values is None:
        continue
      line, = ax.plot(x, values, marker='o', markersize=3, color=colors[m],
                      label=display_name(m))
      if display_name(m) not in labels:
        handles.append(line)
        labels.append(display_name(m))
    title = name or dataset
    if panels == 1:
      title = f'{metric_label(metric)}' + (f' on {title}' if title else '')
    ax.set_title(title, fontsize='medium')
    ax.set_xscale('log', base=2)
    ax.set_xticks(x)
    ax.set_xticklabels([f'{int(s)}' for s in steps],
                       rotation=45 if len(steps) > 8 else 0, fontsize='small')
    ax.minorticks_off()
    ax.set_xlabel(STEP_AXIS)
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
  if panels > 1:
    fig.suptitle(metric_label(metric), fontsize='medium')
  ncol = min(len(labels), 4)
  fig.legend(handles, labels, loc='lower center', ncol=ncol, fontsize='small',
             frameon=False, handlelength=1.5, columnspacing=1.0)
  rows = -(-len(labels) // ncol)
  fig.tight_layout(rect=(0, (0.05 + 0.19 * rows) / fig.get_figheight(), 1, 1))
  save_figure(path_png, fig)


# -------------------------------------------------------------- image grids ---


def image_grid(path_png: str | os.PathLike,
               ground_truth: np.ndarray | Sequence[np.ndarray],
               recons: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
               psnrs: Mapping[str, float] | Sequence[Mapping[str, float]] | None = None,
               metric: str = 'psnr', steps: Mapping[str, int] | None = None,
               dataset: str = '') -> None:
  """Ground truth then each method's reconstruction, its score under each (Fig. 3).

  Images are [H, W, 3] (or [H, W] / [H, W, 1]) floats in [0, 1]. Pass lists of
  ground truths, recon dicts and score dicts (`psnrs`: scores of `metric`) for several
  signals, one row each. steps: method -> the test-time step its reconstruction is from
  (shown under its name).
  """
  if hasattr(ground_truth, 'shape'):  # one signal (NumPy or JAX array).
    ground_truth, recons = [ground_truth], [recons]
    psnrs = None if psnrs is None else [psnrs]
  if psnrs is None:
    psnrs = [{} for _ in ground_truth]
  if not len(ground_truth) == len(recons) == len(psnrs):
    raise UserError(f'image_grid: {len(ground_truth)} ground truths, {len(recons)} '
                    f'recon dicts and {len(psnrs)} PSNR dicts; give one of each per row.')
  methods = columns([m for r in recons for m in r])
  steps = steps or {}
  n_rows, n_cols = len(ground_truth), len(methods) + 1
  fig = Figure(figsize=(max(1.9 * n_cols, 5.0), 2.1 * n_rows + 0.5), dpi=100)
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  unit = METRIC_UNITS.get(metric, '')
  decimals = METRIC_DECIMALS.get(metric, DEFAULT_DECIMALS)
  for i, (gt, rec, ps) in enumerate(zip(ground_truth, recons, psnrs)):
    _show(axes[i, 0], gt, GROUND_TRUTH if i == 0 else '', '')
    for j, m in enumerate(methods, start=1):
      label = ''
      if m in ps and not math.isnan(ps[m]):
        label = f'{METRIC_NAMES.get(metric, metric)} {ps[m]:.{decimals}f}'
        label += f' {unit}' if unit else ''
      title = ''
      if i == 0:
        title = display_name(m) + (f'\nstep {steps[m]}' if m in steps else '')
      _show(axes[i, j], rec.get(m), title, label)
  what = 'at each method\'s best test-time step' if steps else 'after test-time optimisation'
  fig.suptitle(f'Reconstructions {what}' + (f' ({dataset})' if dataset else '') +
               f'; {metric_label(metric)} under each', fontsize='medium')
  fig.tight_layout(rect=_below_title(fig))
  save_figure(path_png, fig)


def _show(ax, image: np.ndarray | None, title: str, below: str) -> None:
  """Draws one image (or an empty cell) with a title above and text below."""
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title, fontsize='small')
  if below:
    ax.set_xlabel(below, fontsize='small')
  if image is None:
    return
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise UserError(f'image_grid: image of shape {image.shape}; pass [H, W, 3] or '
                    '[H, W] arrays in [0, 1].')
  ax.imshow(image, cmap='gray' if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
            interpolation='nearest')


# --------------------------------------------------------------------- GIFs ---


def write_gif(path: str | os.PathLike, animation: Animation) -> None:
  """Ground truth (if any) then each method side by side, a name strip above each panel."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = [Image.fromarray(f) for f in animation_frames(path, animation)]
  files.atomic_write(path, lambda f: images[0].save(
      f, format='GIF', save_all=True, append_images=images[1:],
      duration=animation.frame_ms, loop=0), binary=True)


def write_mp4(path: str | os.PathLike, animation: Animation) -> bool:
  """The same frames as `write_gif` as H.264 MP4 through PyAV; False (nothing written)
  where PyAV or its H.264 encoder is missing."""
  try:
    import av  # pylint: disable=g-import-not-at-top
    av.codec.Codec('libx264', 'w')
  except Exception:  # pylint: disable=broad-except
    return False
  frames = animation_frames(path, animation)
  h, w = frames.shape[1:3]
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')
  rate = max(1, round(1000 / animation.frame_ms))

  def write(f):
    with av.open(f, mode='w', format='mp4') as container:
      stream = container.add_stream('libx264', rate=rate)
      stream.width, stream.height = frames.shape[2], frames.shape[1]
      stream.pix_fmt = 'yuv420p'
      stream.options = {'crf': '18'}
      for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
      container.mux(stream.encode())
  files.atomic_write(path, write, binary=True)
  return True


def animation_frames(path: str | os.PathLike, animation: Animation) -> np.ndarray:
  """uint8 [F, LABEL_HEIGHT + H', W', 3]: every panel's frames scaled up and labelled."""
  labels = animation.labels or {}
  panels = [] if animation.truth is None else [(GROUND_TRUTH, animation.truth)]
  panels += [(labels.get(m, display_name(m)), animation.recons[m])
             for m in columns(animation.recons)]
  if not panels:
    raise UserError(f'write_gif: nothing to animate for {os.fspath(path)}')
  frames = [_rgb_frames(video) for _, video in panels]
  if len({f.shape for f in frames}) != 1 or not len(frames[0]):
    raise UserError(f'write_gif: panels of shapes {[f.shape for f in frames]}; give every '
                    'panel the same [F, H, W, 3] frames (F > 0).')
  height = frames[0].shape[1]
  scale = max(1, -(-animation.min_height // height))
  frames = [f.repeat(scale, axis=1).repeat(scale, axis=2) for f in frames]
  width = frames[0].shape[2]
  strips = [_label_strip(name, width) for name, _ in panels]
  gap = np.full((LABEL_HEIGHT + height * scale, _GAP, 3), 255, np.uint8)
  images = []
  for f in range(len(frames[0])):
    tiles = [np.concatenate([strip, video[f]], axis=0) for strip, video in zip(strips, frames)]
    row = [x for tile in tiles for x in (tile, gap)][:-1]
    images.append(np.concatenate(row, axis=1))
  return np.stack(images)


def _rgb_frames(video: np.ndarray) -> np.ndarray:
  """[F, H, W, 3] (or [F, H, W] / [F, H, W, 1]) in [0, 1] -> uint8 [F, H, W, 3]."""
  video = np.clip(np.asarray(video, np.float32), 0.0, 1.0)
  if video.ndim == 3:
    video = video[..., None]
  if video.ndim != 4 or video.shape[-1] not in (1, 3):
    raise UserError(f'write_gif: frames of shape {video.shape}; pass [F, H, W, 3] in [0, 1].')
  video = np.broadcast_to(video, video.shape[:3] + (3,))
  return (video * 255).round().astype(np.uint8)


def _label_strip(text: str, width: int) -> np.ndarray:
  """[LABEL_HEIGHT, width, 3]: the name in white on dark grey, centred (cut if too long)."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  strip = Image.new('RGB', (width, LABEL_HEIGHT), (40, 40, 40))
  draw = ImageDraw.Draw(strip)
  font = ImageFont.load_default(size=LABEL_HEIGHT - 4)
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  x = max(0, (width - (right - left)) // 2 - left)
  y = (LABEL_HEIGHT - (bottom - top)) // 2 - top
  draw.text((x, y), text, fill=(255, 255, 255), font=font)
  return np.asarray(strip)


# -------------------------------------------------------- panels and routing ---


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
  fig.tight_layout(rect=_below_title(fig) if grid.title else None)
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


# -------------------------------------------------------------------- audio ---


def write_audio(path_stem: str, clips: AudioClips) -> None:
  """A WAV per clip (`<stem>_ground_truth.wav`, `<stem>_<method>.wav`) and `<stem>.png`
  with the waveform and spectrogram of each, ground truth first, then table order."""
  import soundfile  # pylint: disable=g-import-not-at-top
  panels = {'ground truth': clips.truth,
            **{m: clips.recons[m] for m in columns(clips.recons)}}
  waves = {}
  for name, wave in panels.items():
    wave = np.asarray(wave, np.float32)
    waves[name] = np.clip(wave[..., 0] if wave.ndim == 2 else wave, -1.0, 1.0)
    files.atomic_write(
        f'{path_stem}_{name.replace(" ", "_")}.wav',
        lambda f, data=waves[name]: soundfile.write(f, data, clips.rate, format='WAV'),
        binary=True)
  fig = Figure(figsize=(10, 1.6 * len(waves)), dpi=80)
  axes = fig.subplots(len(waves), 2, squeeze=False)
  for row, (name, wave) in zip(axes, waves.items()):
    label = GROUND_TRUTH if name == 'ground truth' else display_name(name)
    if name in clips.scores and not math.isnan(clips.scores[name]):
      label += f' {clips.scores[name]:.2f} {clips.unit}'
    row[0].plot(np.arange(len(wave)) / clips.rate, wave, linewidth=0.3)
    row[0].set_title(label, fontsize=8)
    with np.errstate(divide='ignore'):     # silent stretches have -inf dB
      row[1].specgram(wave, Fs=clips.rate, NFFT=512, noverlap=384)
  fig.tight_layout()
  save_figure(path_stem + '.png', fig)


def _below_title(fig: Figure) -> tuple[float, float, float, float]:
  """The layout box under a figure title (tight_layout alone lets panels overlap it)."""
  return (0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight())
