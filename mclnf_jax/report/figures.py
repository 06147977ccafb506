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
from matplotlib.figure import Figure

from mclnf_jax import files
from mclnf_jax.errors import UserError
from mclnf_jax.report.curves import Curves, as_datasets, curve_values
from mclnf_jax.report.tables import (DEFAULT_DECIMALS, METHOD_GROUPS, METRIC_DECIMALS,
                                     METRIC_NAMES, display_name, order_methods)
from mclnf_jax.report.animation import write_gif, write_mp4
from mclnf_jax.report.canvas import GROUND_TRUTH, below_title, columns, save_figure
from mclnf_jax.report.scene_figures import panel_grid, routing_map
from mclnf_jax.visuals import Animation, AudioClips, ImageGrid, PanelGrid, RoutingMap, Visual

METRIC_UNITS = {'psnr': 'dB'}   # metrics not listed have no unit
STEP_AXIS = 'test-time steps per task'


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
  fig.tight_layout(rect=below_title(fig))
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
